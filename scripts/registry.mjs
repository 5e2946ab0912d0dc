// A throwaway Debian docker-registry (CNCF Distribution) on 127.0.0.1, for the demo and the bench.
import {spawn} from 'node:child_process'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import path from 'node:path'

async function freePort() {
  const server = createServer()
  await new Promise(resolve => {
    server.listen(0, '127.0.0.1', resolve)
  })
  const {port} = server.address()
  await new Promise(resolve => {
    server.close(resolve)
  })
  return port
}

/**
 * Starts a registry storing under a new folder in `parent`; resolves once it answers /v2/, or rejects
 * after 5 s. `stop()` kills it.
 */
export async function startRegistry(parent) {
  const dir = mkdtempSync(path.join(parent, 'registry-'))
  const port = await freePort()
  const config = path.join(dir, 'config.yml')
  writeFileSync(config, `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${dir}/data}}\nhttp: {addr: 127.0.0.1:${port}, secret: local}\n`)
  const child = spawn('docker-registry', ['serve', config], {stdio: 'ignore'})
  const stop = () => child.kill('SIGKILL')
  for (let i = 0; i < 250; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/v2/`)
      return {host: `127.0.0.1:${port}`, stop}
    } catch {
      await new Promise(resolve => {
        setTimeout(resolve, 20)
      })
    }
  }

  stop()
  throw new Error(`docker-registry did not answer on 127.0.0.1:${port} within 5 s`)
}
