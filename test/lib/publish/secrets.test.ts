import {expect} from 'chai'

import {
  FileScanner, isUnencryptedPrivateKey, SECRET_RULES, type SecretFinding,
} from '../../../src/lib/publish/secrets.js'
import {keyMaterial, tokens} from '../../helpers/secrets.js'
import {requireTools} from '../../helpers/tools.js'

/** Scans `text` as one file, fed in pieces of `piece` bytes (0: one piece). */
function scan(filePath: string, text: Buffer | string, piece = 0): SecretFinding[] {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1')
  const scanner = new FileScanner(filePath)
  if (piece === 0) scanner.push(bytes)
  else for (let i = 0; i < bytes.length; i += piece) scanner.push(bytes.subarray(i, i + piece))
  return scanner.end()
}

describe('lib/secrets', () => {
  let keys: ReturnType<typeof keyMaterial>

  before(function () {
    requireTools(this, 'ssh-keygen', 'openssl')
    keys = keyMaterial()
  })

  it('finds every unencrypted private key ssh-keygen and openssl write, at the line of its header', () => {
    for (const [name, key] of Object.entries(keys.secret)) {
      expect(scan(`root/${name}`, `# notes\n\n${key}`), name).to.deep.equal([{line: 3, path: `root/${name}`, rule: 'private-key'}])
    }
  })

  it('does not count encrypted keys, public keys, certificates or documentation that quotes a header', () => {
    for (const [name, text] of Object.entries({...keys.locked, ...keys.harmless})) expect(scan(name, text), name).to.deep.equal([])
    const doc = [
      'A private key starts with -----BEGIN RSA PRIVATE KEY----- and ends with',
      '-----END RSA PRIVATE KEY-----. Keep it secret.',
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      '...',
      '-----END OPENSSH PRIVATE KEY-----',
      '-----BEGIN PRIVATE KEY-----',
      'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC',
      '-----END PRIVATE KEY-----',
    ].join('\n')
    expect(scan('usr/share/doc/ssl/README', doc)).to.deep.equal([])
    expect(isUnencryptedPrivateKey(keys.secret['pkcs8.pem'].replace('PRIVATE KEY-----\n', 'PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n'))).to.equal(false)
  })

  it('finds a key split across any chunk boundary, and in a binary file', () => {
    const key = keys.secret.id_ed25519
    const text = `${'x'.repeat(1000)}\n${key}tail\n`
    for (const piece of [1, 7, 64, 255, 256, 257, 1000, 4096]) expect(scan('f', text, piece), `pieces of ${piece}`).to.deep.equal([{line: 2, path: 'f', rule: 'private-key'}])
    const binary = Buffer.concat([Buffer.from([0x1F, 0x8B, 0, 0, 1, 0x0A]), Buffer.alloc(20_000, 0), Buffer.from(keys.secret['pkcs1.pem'])])
    for (const piece of [0, 3, 8192, 9000]) expect(scan('root/keys.db', binary, piece), `pieces of ${piece}`).to.deep.equal([{line: 2, path: 'root/keys.db', rule: 'private-key'}])
    // Compiled in, as GnuTLS's self-test keys are: not a finding.
    const elf = Buffer.concat([Buffer.from([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]), Buffer.alloc(20_000, 0), Buffer.from(keys.secret['pkcs1.pem'])])
    expect(scan('usr/lib/libtls.so', elf, 4096)).to.deep.equal([])
  })

  it('finds each token shape, with its line, wherever the chunks split it', () => {
    const found = tokens()
    const lines = Object.entries(found).map(([rule, token]) => `export ${rule.toUpperCase().replaceAll('-', '_')}="${token}"`)
    const text = `#!/bin/sh\n${lines.join('\n')}\n`
    const expected = Object.keys(found).map((rule, i) => ({line: i + 2, path: 'etc/profile.d/env.sh', rule}))
    for (const piece of [0, 1, 13, 200]) {
      const result = scan('etc/profile.d/env.sh', text, piece)
      expect(result.sort((a, b) => a.line - b.line), `pieces of ${piece}`).to.deep.equal(expected)
    }
  })

  it('leaves tokens inside longer identifiers, published examples and binary files alone', () => {
    const {'aws-access-key-id': aws, 'github-token': gh} = tokens()
    expect(scan('a', `x${gh}`)).to.deep.equal([])
    expect(scan('a', `${gh}x`)).to.deep.equal([])
    expect(scan('a', `X${aws}`)).to.deep.equal([])
    expect(scan('a', 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE')).to.deep.equal([])
    expect(scan('lib/x.so', Buffer.concat([Buffer.from([0]), Buffer.from(` ${gh} `)]))).to.deep.equal([])
    expect(scan('a', 'sk-this-is-not-a-key desk-top npm_config_cache hf_hub_download')).to.deep.equal([])
    // A chunk that ends where a token's shape could end: what follows decides, so it is judged with the next.
    expect(scan('a', `${gh}x`, gh.length), 'a piece ending at the shape, an identifier after').to.deep.equal([])
    expect(scan('a', `${gh}x`, 1), 'pieces of one byte').to.deep.equal([])
    expect(scan('a', `${gh}\n`, gh.length), 'a piece ending at the token').to.deep.equal([{line: 1, path: 'a', rule: 'github-token'}])
    expect(scan('a', gh, gh.length), 'the file ending at the token').to.deep.equal([{line: 1, path: 'a', rule: 'github-token'}])
  })

  it('reads credential files by path, and only the lines that hold a credential', () => {
    const cases: [string, string, number[]][] = [
      ['root/.aws/credentials', '[default]\nregion = eu-west-1\naws_secret_access_key = abcdefgh12345678\n', [3]],
      ['root/.aws/config', '[default]\naws_secret_access_key = abcdefgh12345678\n', []],
      ['home/a/.docker/config.json', '{\n  "auths": {\n    "ghcr.io": {"auth": "dXNlcjpwYXNz"}\n  }\n}\n', [3]],
      ['home/a/.docker/config.json', '{"auths": {"ghcr.io": {}}, "credsStore": "pass"}', []],
      ['root/.git-credentials', 'https://agent:s3cr3t-value@github.com\n', [1]],
      ['root/.netrc', 'machine example.com\n  login agent\n  password s3cr3t\n', [3]],
      ['root/.npmrc', 'registry=https://r.example/\n//r.example/:_authToken=abcdef012345\n', [2]],
      ['root/.npmrc', `//r.example/:_authToken=${'$'}{NPM_TOKEN}\nfund=false\n`, []],
      ['root/.pypirc', '[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc\n', [3]],
      ['root/.kube/config', 'users:\n- name: a\n  user:\n    token: eyJhbGciOi\n', [4]],
      ['root/.kube/config', 'users:\n- name: a\n  user:\n    exec:\n      command: aws\n', []],
    ]
    for (const [file, text, expected] of cases) {
      const result = scan(file, text, 5)
      expect(result.map(f => f.line), `${file}: ${text}`).to.deep.equal(expected)
      for (const finding of result) expect(SECRET_RULES).to.include(finding.rule)
    }
  })
})
