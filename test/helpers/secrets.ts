import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {tempDir} from './ext4.js'

/**
 * Every secret value a test plants; the root hooks check that none of them appears in anything the run
 * printed, in logs, or in the local records (a finding names a path, a rule and a line, never the value).
 */
export const planted = new Set<string>()

function plant<T extends string>(value: T): T {
  planted.add(value)
  return value
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function random(length: number, alphabet = ALNUM): string {
  const bytes = randomBytes(length)
  return [...bytes].map(b => alphabet[b % alphabet.length]).join('')
}

/** Tokens of each fixed shape the scanner knows, random each run. */
export function tokens(): Record<string, string> {
  const upper = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
  return {
    'anthropic-api-key': plant(`sk-ant-api03-${random(93, `${ALNUM}-_`)}AA`),
    'aws-access-key-id': plant(`AKIA${random(16, upper)}`),
    'github-token': plant(`ghp_${random(36)}`),
    'gitlab-token': plant(`glpat-${random(20)}`),
    'google-api-key': plant(`AIza${random(35)}`),
    'huggingface-token': plant(`hf_${random(34, letters)}`),
    'npm-token': plant(`npm_${random(36)}`),
    'openai-api-key': plant(`sk-proj-${random(40)}T3BlbkFJ${random(40)}`),
    'slack-token': plant(`xoxb-${random(12, '0123456789')}-${random(12, '0123456789')}-${random(24)}`),
    'stripe-live-key': plant(`sk_live_${random(32)}`),
  }
}

export interface KeyMaterial {
  /** Certificates and public keys: never findings. */
  harmless: Record<string, string>
  /** Encrypted private keys: not findings. */
  locked: Record<string, string>
  /** Unencrypted private keys, as the tools write them: findings. */
  secret: Record<string, string>
}

/** Keys made by ssh-keygen and openssl, certificates by openssl. */
export function keyMaterial(): KeyMaterial {
  const dir = tempDir('plugin-image-keys-')
  const run = (command: string, ...args: string[]): void => {
    execFileSync(command, args, {cwd: dir, stdio: 'ignore'})
  }

  run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'agent@workspace', '-f', 'id_ed25519')
  run('ssh-keygen', '-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', 'id_rsa')
  run('ssh-keygen', '-q', '-t', 'ed25519', '-N', 'passphrase', '-f', 'id_locked')
  run('openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'pkcs8.pem')
  run('openssl', 'genrsa', '-traditional', '-out', 'rsa.pem', '2048')
  run('openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec.pem')
  run('openssl', 'pkcs8', '-topk8', '-in', 'pkcs8.pem', '-passout', 'pass:secret', '-out', 'pkcs8-enc.pem')
  run('openssl', 'rsa', '-in', 'rsa.pem', '-traditional', '-aes256', '-passout', 'pass:secret', '-out', 'rsa-enc.pem')
  run('openssl', 'pkey', '-in', 'pkcs8.pem', '-pubout', '-out', 'pub.pem')
  run('openssl', 'req', '-x509', '-new', '-key', 'pkcs8.pem', '-subj', '/CN=example', '-days', '1', '-out', 'cert.pem')
  const read = (name: string): string => readFileSync(path.join(dir, name), 'latin1')
  const secret = {
    id_ed25519: read('id_ed25519'), id_rsa: read('id_rsa'), 'sec1.pem': read('ec.pem'), 'pkcs1.pem': read('rsa.pem'), 'pkcs8.pem': read('pkcs8.pem'),
  }
  // The body lines of a key are the secret: none may appear anywhere.
  for (const key of Object.values(secret)) for (const line of key.split('\n')) if (line.length > 40 && !line.startsWith('-----')) planted.add(line)
  return {
    harmless: {'cert.pem': read('cert.pem'), 'id_ed25519.pub': read('id_ed25519.pub'), 'pub.pem': read('pub.pem')},
    locked: {id_locked: read('id_locked'), 'pkcs8-enc.pem': read('pkcs8-enc.pem'), 'rsa-enc.pem': read('rsa-enc.pem')},
    secret,
  }
}
