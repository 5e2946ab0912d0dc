import {usageError} from '../support/errors.js'

/** OCI `architecture` values (Go's GOARCH names) that a Linux guest can have. */
export const ARCHITECTURES = ['amd64', 'arm64', 'riscv64', 'ppc64le', 's390x', '386', 'arm'] as const
export type Architecture = (typeof ARCHITECTURES)[number]

const ARCH_ALIASES: Readonly<Record<string, Architecture>> = {
  aarch64: 'arm64',
  amd64: 'amd64',
  arm64: 'arm64',
  armhf: 'arm',
  armv7l: 'arm',
  i386: '386',
  i686: '386',
  ia32: '386',
  powerpc64le: 'ppc64le',
  ppc64: 'ppc64le',
  x64: 'amd64',

  x86_64: 'amd64',
}

/** Every spelling `--arch` accepts: the OCI names, then the aliases (for help and shell completion). */
export const ARCH_NAMES: readonly string[] = [...new Set([...ARCHITECTURES, ...Object.keys(ARCH_ALIASES)])]

/** Maps uname/Node/Debian spellings onto the OCI name; anything unknown is a usage error listing the valid ones. */
export function normalizeArch(raw: string): Architecture {
  const name = raw.trim().toLowerCase()
  const arch = ARCH_ALIASES[name] ?? (ARCHITECTURES as readonly string[]).find(a => a === name)
  if (arch === undefined) {
    throw usageError(`unknown architecture "${raw}": valid architectures are ${ARCHITECTURES.join(', ')} (aliases: x86_64, x64, aarch64)`)
  }

  return arch as Architecture
}

/** The host's architecture, the fallback when a workspace records none. */
export function hostArch(arch: string = process.arch): Architecture {
  return normalizeArch(arch)
}
