#!/usr/bin/env node
// Runs the TypeScript sources. tsx is registered from here, not with `node --import tsx`, so the script works
// from any working directory.
import {register} from 'tsx/esm/api'

register()
const {execute} = await import('@oclif/core')
await execute({development: true, dir: import.meta.url})
