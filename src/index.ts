/**
 * The lib API of @microagent/plugin-image, for other plugins: commit a workspace, read and write the OCI
 * image layout, extract ext4 images. Nothing here depends on oclif at run time (the hook event types
 * extend oclif's, for plugins that answer them).
 */
export type {MicroagentHookEvents, MicroagentHooks} from './hook-events.js'
export {
  type ImageInspection,
  type ImageRecord,
  inspectImage,
  listImages,
  removeImage,
  type RemoveResult,
  tagImage,
  type TagResult,
} from './lib/catalog.js'
export {applyChanges, CHANGE_INSTRUCTIONS} from './lib/changes.js'
export {
  changeset, type ChangesetOptions, type ParentTree, WalkGate,
} from './lib/changeset.js'
export {
  type CommitOptions, type CommitResult, commitWorkspace,
} from './lib/commit.js'
export {
  type Compression, COMPRESSIONS, type CompressorOptions, createCompressor, defaultZstdImplementation, LAYER_MEDIA_TYPES, type ZstdImplementation,
} from './lib/compress.js'
export {
  type Backend,
  BACKEND_NAMES,
  BACKENDS,
  type Context,
  currentContext,
  defaultStateDir,
  hostBackend,
  normalizeBackend,
  resolveContext,
} from './lib/context.js'
export {DigestCounter, sha256Digest} from './lib/digest.js'
export {
  type DiskView, openDiskView, readSuperblock, type SuperblockFacts,
} from './lib/disk.js'
export {findDebugfs} from './lib/e2fsprogs.js'
export {
  type AxEnvelope,
  ERROR_KINDS,
  type ErrorKind,
  EXIT_CODES,
  isMicroagentError,
  MicroagentError,
  toEnvelope,
} from './lib/errors.js'
export {pathMatcher, type PathMatcher} from './lib/exclude.js'
export {DebugfsExtractor, type DebugfsExtractorOptions} from './lib/extractor/debugfs.js'
export {
  chooseExtractor,
  type Entry,
  type EntryType,
  type ExtractOptions,
  type Extractor,
  type ExtractorAnswer,
  isExtractor,
  type Skip,
  type Timestamp,
} from './lib/extractor/extractor.js'
export {type FakeEntry, FakeExtractor} from './lib/extractor/fake.js'
export {
  buildConfig,
  buildManifest,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  MEDIA_TYPES,
  REF_NAME_ANNOTATION,
  resolveCreated,
} from './lib/image.js'
export {
  emptyLayerStats, excluding, isWhiteout, type LayerItem, type LayerOptions, type LayerStats, tarLayer, type Whiteout,
} from './lib/layer.js'
export {
  type ImageIndex, layoutPath, OciLayout, type UntagResult,
} from './lib/layout.js'
export type {Lease} from './lib/lease.js'
export {
  buildChildConfig, defaultsFromConfig, MAX_LAYERS, openParentImage, type ParentImage,
} from './lib/parent-image.js'
export {type ParentTreeSource, readParentTree, treeFromLayers} from './lib/parent-tree.js'
export {
  ARCH_NAMES, type Architecture, ARCHITECTURES, hostArch, normalizeArch,
} from './lib/platform.js'
export {
  type BlobProgress, type CommitProgress, ProgressDisplay, type ProgressOutput, type PushProgress,
} from './lib/progress.js'
export {ImageRecords} from './lib/records.js'
export {
  isLocalReference, isLoopbackRegistry, parseReference, type Reference,
} from './lib/reference.js'
export {
  authFiles,
  type Credential,
  describeCredential,
  normalizeRegistryKey,
  resolveCredential,
} from './lib/registry/auth.js'
export {RegistryClient, type RegistryClientOptions, type RegistryRequest} from './lib/registry/client.js'
export {
  pushDestination, pushImage, type PushOptions, type PushResult,
} from './lib/registry/push.js'
export {
  QUIRK_IDS, type QuirkId, REGISTRY_QUIRKS, type RegistryQuirk,
} from './lib/registry/quirks.js'
export {
  EGRESS_CA_FILES, isLeftOutRuntimePath, RUNTIME_FILES, type RuntimeAction, type RuntimeFile, runtimeFile, type RuntimeFileReport, withoutRuntimeFiles,
} from './lib/runtime-files.js'
export {
  CONFINED_DISK,
  openSandbox,
  parseSandboxMode,
  Sandbox,
  SANDBOX_MODES,
  type SandboxMode,
  type SandboxOptions,
  type SandboxStatus,
} from './lib/sandbox.js'
export {
  checkPublishable, readSecrets, SECRETS_POLICIES, SECRETS_RECORD, type SecretsPolicy,
} from './lib/secrets-record.js'
export {
  FileScanner, scanningSecrets, SECRET_RULES, type SecretFinding, type SecretRule, type SecretScan,
} from './lib/secrets.js'
export {
  parsePaxTime, readTar, TarFormatError, type TarMember, type TarMemberType,
} from './lib/tar-reader.js'
export {
  compareTreePaths,
  type Identity,
  nodeFromEntry,
  openTreeRecord,
  PendingTreeRecord,
  TREE_RECORD,
  type TreeNode,
  type TreeRecord,
  TreeRecordError,
  TreeRecordWriter,
} from './lib/tree-record.js'
export {
  onlyCertificates, type PemCertificate, pemCertificates, withoutCertificates,
} from './lib/trust-bundle.js'
export {
  type ImageDefaults,
  leaseStoppedWorkspace,
  openStoppedWorkspace,
  readRuntimeState,
  validateWorkspaceName,
  type Workspace,
  workspacePaths,
} from './lib/workspace.js'
