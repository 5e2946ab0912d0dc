#!/usr/bin/env node
// Runs the TypeScript sources. tsx is registered from here, not with `node --import tsx`, so the script works
// from any working directory.
// eslint-disable-next-line n/no-unpublished-import -- dev.js runs from a checkout, where devDependencies exist
import {register} from 'tsx/esm/api'

register()
const {execute} = await import('@oclif/core/execute')
await execute({development: true, dir: import.meta.url})
