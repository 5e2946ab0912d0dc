// What registries in use do that the distribution spec does not say, and what the push does about each. One
// table, so that a new report lands in one place; each row is tested against nock (test/lib/registry/quirks.test.ts)
// and cites the public reports that found it.

export const QUIRK_IDS = [
  'patch-201', 'patch-204', 'patch-range-stalls', 'range-missing', 'location-opaque', 'chunk-min-length', 'mount-scope', 'mount-refused',
] as const
export type QuirkId = (typeof QUIRK_IDS)[number]

export interface RegistryQuirk {
  /** What the registries do. */
  behaviour: string
  /** What this plugin does about it. */
  handling: string
  id: QuirkId
  /** Who was seen doing it. */
  registries: string
  /** Public reports (issues, pull requests, spec changes) that found or pinned it down. */
  sources: readonly string[]
}

export const REGISTRY_QUIRKS: readonly RegistryQuirk[] = [
  {
    behaviour: 'answers an intermediate chunk PATCH with 201 Created instead of 202 Accepted',
    handling: 'a PATCH answered 201 counts as accepted, like 202 and 204; its Range is still checked',
    id: 'patch-201',
    registries: 'Amazon ECR',
    sources: [
      'https://github.com/regclient/regclient/issues/81',
      'https://github.com/openai/tart/issues/273',
      'https://github.com/dotnet/sdk-container-builds/pull/279',
      'https://github.com/jdx/mise/pull/11376',
    ],
  },
  {
    behaviour: 'answers a chunk PATCH with 204 No Content instead of 202 Accepted',
    handling: 'a PATCH answered 204 counts as accepted; its Range is still checked',
    id: 'patch-204',
    registries: 'go-containerregistry\'s registry (pkg/registry) until 2026-04',
    sources: ['https://github.com/google/go-containerregistry/pull/2265'],
  },
  {
    behaviour: 'ignores the body of every PATCH after the first while answering success; its Range stops advancing',
    handling:
      'Range is checked after every PATCH: one that does not end at the last byte sent fails the push (exit 6) with a message '
      + 'saying so, the upload session is deleted, and no manifest is sent. Never a corrupt blob.',
    id: 'patch-range-stalls',
    registries: 'Amazon ECR (reported 2026-06)',
    sources: ['https://github.com/aws/containers-roadmap/issues/2831', 'https://github.com/crashappsec/chalk/pull/682'],
  },
  {
    behaviour: 'answers a PATCH without Range, or with the chunk\'s own range (`<start>-<end>`) rather than `0-<end>`',
    handling:
      'without Range the upload\'s status is asked (GET on the Location, 204 + Range); a status without Range either '
      + 'leaves the check to the registry\'s digest check at the final PUT. `<start>-<end>` is accepted when it ends at the last byte sent.',
    id: 'range-missing',
    registries: 'implementations differ (the spec made Range a MUST in 2023)',
    sources: ['https://github.com/opencontainers/distribution-spec/pull/366', 'https://github.com/opencontainers/distribution-spec/issues/580'],
  },
  {
    behaviour: 'gives a relative upload Location, or one outside /v2/ (another path or host)',
    handling: 'Location is opaque: resolved against the URL of the request it answered, its query kept, never rebuilt',
    id: 'location-opaque',
    registries: 'GitHub Container Registry (relative), Google Artifact Registry (/artifacts-uploads/…), distribution with relativeurls',
    sources: [
      'https://github.com/opencontainers/distribution-spec/pull/80',
      'https://github.com/apple/swift-container-plugin/pull/44',
      'https://github.com/oras-project/rust-oci-client/pull/175',
    ],
  },
  {
    behaviour: 'needs chunks of a minimum size (object stores: 5 MiB), said by OCI-Chunk-Min-Length on the POST',
    handling: 'chunks are 8 MiB, or the OCI-Chunk-Min-Length of the POST when larger; a value that is not a positive integer is ignored',
    id: 'chunk-min-length',
    registries: 'S3-backed registries, Amazon ECR (5 MiB)',
    sources: [
      'https://github.com/opencontainers/distribution-spec/issues/374',
      'https://github.com/opencontainers/distribution-spec/pull/391',
      'https://github.com/opencontainers/distribution-spec/pull/481',
      'https://github.com/dotnet/sdk-container-builds/pull/279',
    ],
  },
  {
    behaviour: 'grants a cross-repository mount only to a token that also holds `pull` on the source repository',
    handling: 'a mount asks for `repository:<target>:pull,push` and `repository:<source>:pull` together',
    id: 'mount-scope',
    registries: 'Docker Hub',
    sources: ['https://github.com/oras-project/rust-oci-client/issues/235'],
  },
  {
    behaviour: 'refuses a mount (401, 403 or 404) instead of answering 202 with an upload session, e.g. when the source repository is gone',
    handling: 'a refused mount falls back to a plain upload; only the plain upload\'s own failure fails the push',
    id: 'mount-refused',
    registries: 'Docker Hub, Harbor, GitLab, registries answering 403 for an unreadable source',
    sources: [
      'https://github.com/google/go-containerregistry/pull/1406',
      'https://github.com/google/go-containerregistry/pull/1681',
      'https://github.com/goharbor/harbor/issues/17097',
      'https://github.com/containerd/containerd/issues/14086',
    ],
  },
]

/** Statuses a chunk PATCH may succeed with: the spec's 202, and what `patch-201` and `patch-204` registries send. */
export const PATCH_ACCEPTED: readonly number[] = [202, 201, 204]

/** Statuses of a refused mount that fall back to a plain upload (`mount-refused`). */
export const MOUNT_REFUSED: readonly number[] = [401, 403, 404]

/** The chunk size for an upload: `base`, or the POST's OCI-Chunk-Min-Length when that is a larger positive integer. */
export function chunkSize(base: number, minLengthHeader: null | string): number {
  const min = /^\d{1,15}$/.test(minLengthHeader?.trim() ?? '') ? Number(minLengthHeader) : 0
  return Math.max(base, min)
}

/** A `Range: 0-<end>` (or `bytes=…`, or `<start>-<end>`) header, inclusive; undefined when absent or malformed. */
export function parseRange(header: null | string): undefined | {end: number; start: number} {
  const match = /^\s*(?:bytes=)?(\d{1,15})-(\d{1,15})\s*$/.exec(header ?? '')
  if (!match) return undefined
  const [start, end] = [Number(match[1]), Number(match[2])]
  return start <= end ? {end, start} : undefined
}

/**
 * Whether a Range answered after sending bytes `offset`–`end` shows them all received: it ends at `end`, and
 * starts at 0 (the whole upload so far, as distribution sends) or at `offset` (the chunk's own range).
 */
export function rangeReaches(range: {end: number; start: number}, offset: number, end: number): boolean {
  return range.end === end && (range.start === 0 || range.start === offset)
}
