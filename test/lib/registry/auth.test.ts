import {expect} from 'chai'
import {chmodSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {
  authFiles, credentialFromFile, describeCredential, normalizeRegistryKey, resolveCredential,
} from '../../../src/lib/registry/auth.js'
import {rejection} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'

const b64 = (text: string): string => Buffer.from(text).toString('base64')

function configFile(content: unknown): {dir: string; file: string} {
  const dir = tempDir('plugin-image-auth-')
  const file = path.join(dir, 'config.json')
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content))
  return {dir, file}
}

/** Puts a docker-credential-<name> script on a PATH of its own. */
function helper(name: string, script: string): string {
  const dir = tempDir('plugin-image-helper-')
  writeFileSync(path.join(dir, `docker-credential-${name}`), `#!/bin/sh\n${script}\n`)
  chmodSync(path.join(dir, `docker-credential-${name}`), 0o755)
  return dir
}

describe('registry/auth', () => {
  it('consults the files in the documented order', () => {
    const files = authFiles({
      DOCKER_CONFIG: '/d', HOME: '/h', REGISTRY_AUTH_FILE: '/r.json', XDG_CONFIG_HOME: '/x', XDG_RUNTIME_DIR: '/run/u',
    })
    expect(files.map(f => f.path)).to.deep.equal(['/r.json', '/d/config.json', '/h/.microagent/auth.json', '/run/u/containers/auth.json', '/x/containers/auth.json'])
    expect(authFiles({HOME: '/h'}).map(f => f.path)).to.deep.equal(['/h/.docker/config.json', '/h/.microagent/auth.json', '/h/.config/containers/auth.json'])
  })

  const keys: [string, string][] = [
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['http://localhost:5000/v2/', 'localhost:5000'],
    ['GHCR.IO', 'ghcr.io'],
  ]
  for (const [key, normal] of keys) it(`normalises ${key}`, () => expect(normalizeRegistryKey(key)).to.equal(normal))

  it('reads auth, username/password, identitytoken and registrytoken entries', async () => {
    const {file} = configFile({
      auths: {
        'a.example': {auth: b64('alice:pa:ss\u0000')},
        'b.example': {password: 'pw', username: 'bob'},
        'c.example': {identitytoken: 'refresh-me'},
        'd.example': {registrytoken: 'bearer-me'},
        'e.example': {},
      },
    })
    const get = (host: string) => credentialFromFile({kind: 'docker', path: file}, host)
    expect(await get('a.example')).to.include({password: 'pa:ss', username: 'alice'})
    expect(await get('b.example')).to.include({password: 'pw', username: 'bob'})
    expect(await get('c.example')).to.include({identityToken: 'refresh-me'})
    expect(await get('d.example')).to.include({registryToken: 'bearer-me'})
    expect(await get('e.example')).to.equal(undefined)
    expect(await get('f.example')).to.equal(undefined)
  })

  it("finds Docker Hub credentials under docker login's key", async () => {
    const {dir} = configFile({auths: {'https://index.docker.io/v1/': {auth: b64('hubuser:hubpass')}}})
    expect(await resolveCredential('docker.io', {DOCKER_CONFIG: dir, HOME: tempDir()})).to.include({username: 'hubuser'})
  })

  it('takes the first file that holds a credential', async () => {
    const first = configFile({auths: {'reg.example': {auth: b64('first:1')}}})
    const second = configFile({auths: {'reg.example': {auth: b64('second:2')}}})
    const env = {DOCKER_CONFIG: second.dir, HOME: tempDir(), REGISTRY_AUTH_FILE: first.file}
    expect(await resolveCredential('reg.example', env)).to.include({username: 'first'})
    expect(await resolveCredential('other.example', env)).to.equal(undefined)
  })

  describe('credential helpers', () => {
    const savedPath = process.env.PATH

    afterEach(() => {
      process.env.PATH = savedPath
    })

    it('prefers credHelpers over credsStore over auths', async () => {
      const perHost = helper('per-host', 'cat >/dev/null; echo \'{"ServerURL":"x","Username":"from-helper","Secret":"s1"}\'')
      const store = helper('store', 'echo \'{"Username":"from-store","Secret":"s2"}\'')
      process.env.PATH = `${perHost}:${store}:${savedPath}`
      const {file} = configFile({auths: {'reg.example': {auth: b64('from-auths:3')}}, credHelpers: {'reg.example': 'per-host'}, credsStore: 'store'})
      expect(await credentialFromFile({kind: 'docker', path: file}, 'reg.example')).to.include({password: 's1', username: 'from-helper'})
      expect(await credentialFromFile({kind: 'docker', path: file}, 'other.example')).to.include({username: 'from-store'})
    })

    it('passes the server address on stdin and reads identity tokens', async () => {
      process.env.PATH = `${helper('tok', String.raw`read server; echo "{\"Username\":\"<token>\",\"Secret\":\"$server\"}"`)}:${savedPath}`
      const {file} = configFile({credsStore: 'tok'})
      expect(await credentialFromFile({kind: 'docker', path: file}, 'docker.io')).to.deep.equal({identityToken: 'https://index.docker.io/v1/', source: 'docker-credential-tok'})
    })

    it('treats "credentials not found" as anonymous', async () => {
      process.env.PATH = `${helper('empty', 'echo "credentials not found in native keychain"; exit 1')}:${savedPath}`
      const {file} = configFile({credsStore: 'empty'})
      expect(await credentialFromFile({kind: 'docker', path: file}, 'reg.example')).to.equal(undefined)
    })

    it('names a helper that fails, without printing its output', async () => {
      process.env.PATH = `${helper('broken', 'echo "secret-ish diagnostics" >&2; exit 3')}:${savedPath}`
      const {file} = configFile({credsStore: 'broken'})
      const error = await rejection(credentialFromFile({kind: 'docker', path: file}, 'reg.example'))
      expect(error.message).to.equal('credential helper docker-credential-broken failed (exit 3)')
      expect(error.exitCode).to.equal(6)
    })

    it('names a helper that is missing, and the file that asks for it', async () => {
      const {file} = configFile({credHelpers: {'reg.example': 'nonexistent-xyz'}})
      const error = await rejection(credentialFromFile({kind: 'docker', path: file}, 'reg.example'))
      expect(error.message).to.contain('docker-credential-nonexistent-xyz')
      expect(error.message).to.contain(file)
      expect(error.code).to.equal('CREDENTIAL_HELPER_MISSING')
    })
  })

  it('names a malformed file and the problem', async () => {
    for (const [content, problem] of [
      ['{"auths": ', /not valid JSON/],
      ['[1, 2]', /not a JSON object/],
      [{auths: {'reg.example': {auth: b64('no-colon')}}}, /not base64 of "user:password"/],
    ] as const) {
      const {file} = configFile(content)
      const error = await rejection(credentialFromFile({kind: 'docker', path: file}, 'reg.example'))
      expect(error.message).to.contain(file)
      expect(error.message).to.match(problem)
    }
  })

  it('names an unreadable file', async () => {
    if (process.getuid?.() === 0) {
      // root reads files whatever their mode: use a directory in the file's place instead.
      const dir = tempDir()
      mkdirSync(path.join(dir, 'config.json'))
      const error = await rejection(credentialFromFile({kind: 'docker', path: path.join(dir, 'config.json')}, 'x'))
      expect(error.message).to.contain(path.join(dir, 'config.json'))
      return
    }

    const {file} = configFile({})
    chmodSync(file, 0)
    expect((await rejection(credentialFromFile({kind: 'docker', path: file}, 'x'))).message).to.contain(file)
  })

  it('describes credentials without secrets', () => {
    expect(describeCredential({password: 'p4ss', source: '/c.json', username: 'u'})).to.equal('user "u" from /c.json')
    expect(describeCredential({identityToken: 't0k', source: 'docker-credential-x'})).to.equal('a token from docker-credential-x')
    expect(describeCredential()).to.equal('anonymous')
  })
})
