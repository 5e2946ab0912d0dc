// Which extended attributes an image carries, and in which form: the policy the extractor applies to each inode's xattrs.
import {extractionError} from '../support/errors.js'

/** Names libss can take inside double quotes; xattr names outside this set are refused. */
export const SAFE_XATTR_NAME = /^[\u0021\u0023-\u003C\u003E-\u007E]+$/
/** xattrs an image may carry. `trusted.overlay.*` is overlayfs bookkeeping that would change meaning in a layer. */
export function keepXattr(name: string): boolean {
  if (name.startsWith('trusted.overlay.')) return false
  return (
    name.startsWith('user.')
    || name.startsWith('security.')
    || name.startsWith('trusted.')
    || name === 'system.posix_acl_access'
    || name === 'system.posix_acl_default'
  )
}

/** ACL entry tags whose id field means nothing; the kernel reports it as -1. */
const ACL_OWNERLESS_TAGS = new Set([0x01, 0x04, 0x10, 0x20])

/**
 * `ea_get` converts ACLs from ext4's on-disk form to the VFS form (version 2) that tar and OCI carry, but
 * writes 0 where the kernel writes 0xffffffff in ids that mean nothing; set them as the kernel does, so
 * the layer holds the bytes `getfattr` and GNU tar would.
 */
export function vfsAcl(value: Buffer, entryPath: Buffer): Buffer {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) {
    throw extractionError(`"/${entryPath.toString('latin1')}" has a malformed POSIX ACL`)
  }

  const acl = Buffer.from(value)
  for (let offset = 4; offset < acl.length; offset += 8) {
    if (ACL_OWNERLESS_TAGS.has(acl.readUInt16LE(offset))) acl.writeUInt32LE(0xFF_FF_FF_FF, offset + 4)
  }

  return acl
}
