import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {
  chmodSync, closeSync, linkSync, mkdirSync, openSync, symlinkSync, writeFileSync, writeSync,
} from 'node:fs'
import path from 'node:path'

import {buildExt4, tempDir} from './ext4.js'

/** cap_net_raw+ep, VFS capability v2. */
export const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex')
/** An access ACL with a named user (1000) and a mask, in the VFS form the kernel reports. */
export const ACL = Buffer.concat([
  Buffer.from([2, 0, 0, 0]),
  ...[
    [0x01, 6, 0xFF_FF_FF_FF],
    [0x02, 6, 1000],
    [0x04, 4, 0xFF_FF_FF_FF],
    [0x10, 6, 0xFF_FF_FF_FF],
    [0x20, 4, 0xFF_FF_FF_FF],
  ].map(([tag, perm, id]) => {
    const entry = Buffer.alloc(8)
    entry.writeUInt16LE(tag, 0)
    entry.writeUInt16LE(perm, 2)
    entry.writeUInt32LE(id, 4)
    return entry
  }),
])
export const BIG_XATTR = Buffer.from(Array.from({length: 100}, (_, i) => (i * 7) % 256))
export const NAMES = {
  control: Buffer.from('tab\there\u001B[0m'),
  dash: Buffer.from('-dash'),
  dots: Buffer.from('...'),
  hash: Buffer.from('#hash'),
  long: Buffer.from('L'.repeat(255)),
  newline: Buffer.from('new\nline'),
  nonUtf8: Buffer.from([0x63, 0x61, 0x66, 0xE9]),
  quote: Buffer.from('"quote\''),
}
export const DEEP = ['d'.repeat(60), 'e'.repeat(60), 'f'.repeat(60), 'g'.repeat(60), 'h'.repeat(60)]

export interface FidelityImage {
  file: string
  random: {sha256: string; size: number}
  sparse: {sha256: string; size: number}
}

/**
 * An ext4 image holding every case commit must keep: owners (large ids too), special mode bits, hard
 * links, symlinks of all sorts, devices, a fifo, a socket, xattrs (capability, ACL, a large value, on a
 * directory), odd and long names, deep paths, times with ns, before 1970 and after 2038, a sparse file.
 */
export function buildFidelityImage(file = path.join(tempDir(), 'fidelity.ext4')): FidelityImage {
  const random = randomBytes(1024 * 1024 + 1)
  let sparseHash = ''
  const sparseSize = 4 * 1024 * 1024
  const scratch = tempDir('plugin-image-scratch-')
  writeFileSync(path.join(scratch, 'cap'), CAPABILITY)
  writeFileSync(path.join(scratch, 'acl'), ACL)
  writeFileSync(path.join(scratch, 'big'), BIG_XATTR)
  buildExt4(file, {
    commands: [
      'sif /home/user uid 1000',
      'sif /home/user gid 1000',
      'sif /home/user/notes uid 1000',
      'sif /home/user/notes gid 1000',
      'sif /data/random uid 100000',
      'sif /data/random gid 200000',
      'sif /data/empty uid 3000000',
      'sif /data/empty gid 3000001',
      'sif /bin/wall gid 5',
      'sif /secret mode 0100000',
      // 1700000000.123456789
      'sif /etc/motd mtime 0x6553f100',
      'sif /etc/motd mtime_extra 0x1d6f3454',
      // one second before the epoch
      'sif /data/old mtime 0xffffffff',
      'sif /data/old mtime_extra 0',
      // 2100-01-01: the epoch bits of the extra field carry it past 2038
      'sif /data/future mtime 0xf4865700',
      'sif /data/future mtime_extra 1',
      'cd /dev',
      'mknod null c 1 3',
      'sif null mode 020666',
      'mknod sda b 8 0',
      'sif sda mode 060660',
      'sif sda gid 6',
      // mknod takes only small numbers; the new-style encoding of 4095:1048575 is 0xffffffff in i_block[1].
      'mknod wide c 1 1',
      'sif wide block[0] 0',
      'sif wide block[1] 0xffffffff',
      'sif wide mode 020600',
      'cd /',
      'ea_set /etc/motd user.comment hello',
      `ea_set -f ${path.join(scratch, 'big')} /etc/motd user.big`,
      `ea_set -f ${path.join(scratch, 'cap')} /bin/ping security.capability`,
      `ea_set -f ${path.join(scratch, 'acl')} /data system.posix_acl_access`,
      'ea_set /tmp user.dirattr yes',
      'ea_set /var trusted.overlay.opaque y',
    ],
    sizeMiB: 64,
    tree(root) {
      const dir = (rel: string, mode = 0o755): void => {
        mkdirSync(path.join(root, rel), {recursive: true})
        chmodSync(path.join(root, rel), mode)
      }

      const file = (rel: string, data: Buffer | string, mode = 0o644): void => {
        writeFileSync(path.join(root, rel), data)
        chmodSync(path.join(root, rel), mode)
      }

      dir('etc')
      file('etc/motd', 'demo\n')
      dir('bin')
      file('bin/su', 'su', 0o4755)
      file('bin/wall', 'wall', 0o2755)
      file('bin/both', 'both', 0o6755)
      file('bin/ping', 'ping', 0o755)
      dir('tmp', 0o1777)
      dir('var/mail', 0o2775)
      dir('usr/bin')
      file('usr/bin/perl', 'perl!', 0o755)
      linkSync(path.join(root, 'usr/bin/perl'), path.join(root, 'usr/bin/perl5.36'))
      dir('home/user', 0o700)
      file('home/user/notes', 'mine', 0o600)
      dir('links')
      symlinkSync('/etc/motd', path.join(root, 'links/abs'))
      symlinkSync('../etc/motd', path.join(root, 'links/rel'))
      symlinkSync('nowhere', path.join(root, 'links/dangling'))
      symlinkSync('../../../../etc/passwd', path.join(root, 'links/escape'))
      symlinkSync('x'.repeat(200), path.join(root, 'links/long'))
      symlinkSync('../etc', path.join(root, 'links/dir'))
      dir('names')
      for (const name of Object.values(NAMES)) writeFileSync(Buffer.from(`${root}/names/${name.toString('latin1')}`, 'latin1'), name)
      dir(DEEP.join('/'))
      file(`${DEEP.join('/')}/leaf`, 'deep')
      dir('data')
      file('data/random', random)
      file('data/empty', '')
      file('data/old', 'old')
      file('data/future', 'future')
      const sparse = openSync(path.join(root, 'data/sparse'), 'w')
      writeSync(sparse, Buffer.from('middle'), 0, 6, 2 * 1024 * 1024)
      closeSync(sparse)
      execFileSync('truncate', ['-s', String(sparseSize), path.join(root, 'data/sparse')])
      const sparseContent = Buffer.alloc(sparseSize)
      sparseContent.write('middle', 2 * 1024 * 1024)
      sparseHash = createHash('sha256').update(sparseContent).digest('hex')
      dir('dev')
      dir('run')
      execFileSync('mkfifo', [path.join(root, 'run/fifo')])
      execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path.join(root, 'run/sock')])
      file('secret', 'hidden')
      file('.wh.lookalike', 'not a whiteout')
    },
  })
  return {
    file,
    random: {sha256: createHash('sha256').update(random).digest('hex'), size: random.length},
    sparse: {sha256: sparseHash, size: sparseSize},
  }
}
