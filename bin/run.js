#!/usr/bin/env node
import module from 'node:module'

// Node ≥ 22.1 can keep compiled code of every module it loads (oclif, this plugin) on disk, under the temp dir
// and keyed by Node version, so later start-ups skip most parsing and compiling. Node 20 has no such call.
// NODE_DISABLE_COMPILE_CACHE=1 turns it off; NODE_COMPILE_CACHE=<dir> moves it.
// eslint-disable-next-line n/no-unsupported-features/node-builtins -- absent on Node 20, hence the optional call
module.enableCompileCache?.()

// Imported after the cache is on: a static import would be loaded (and compiled) before this line runs.
const {execute} = await import('@oclif/core/execute')
await execute({dir: import.meta.url})
