/**
 * The lib API of @microagent/plugin-image, for other plugins: commit a workspace, read and write the OCI
 * image layout, extract ext4 images. Nothing here depends on oclif at run time (the hook event types
 * extend oclif's, for plugins that answer them).
 */
export type {MicroagentHookEvents, MicroagentHooks} from './hook-events.js'
export {
  type CommitOptions, type CommitResult, commitWorkspace,
} from './lib/commit.js'
export {DebugfsExtractor, type DebugfsExtractorOptions} from './lib/extractor/debugfs.js'
export {
  type DiskView, openDiskView, readSuperblock, type SuperblockFacts,
} from './lib/extractor/disk.js'
export {findDebugfs} from './lib/extractor/e2fsprogs.js'
export {
  chooseExtractor,
  type DiskProbe,
  type Entry,
  type EntryType,
  type ExtractOptions,
  type Extractor,
  type ExtractorAnswer,
  isExtractor,
  type ProbedInode,
  type ProbedListing,
  type Skip,
  type Timestamp,
} from './lib/extractor/extractor.js'
export {type FakeEntry, FakeExtractor} from './lib/extractor/fake.js'
export {
  CONFINED_DISK,
  openSandbox,
  parseSandboxMode,
  Sandbox,
  SANDBOX_MODES,
  type SandboxMode,
  type SandboxOptions,
  type SandboxStatus,
} from './lib/extractor/sandbox.js'
export {changeset, type ChangesetOptions, type ParentTree} from './lib/incremental/changeset.js'
export {
  buildChildConfig, defaultsFromConfig, MAX_LAYERS, openParentImage, type ParentImage,
} from './lib/incremental/parent-image.js'
export {type ParentTreeSource, readParentTree, treeFromLayers} from './lib/incremental/parent-tree.js'
export {openTreeRecord, type TreeRecord} from './lib/incremental/tree-record-reader.js'
export {
  compareTreePaths, type Identity, nodeFromEntry, PendingTreeRecord, TREE_RECORD, type TreeNode, TreeRecordError, TreeRecordWriter,
} from './lib/incremental/tree-record.js'
export {UnchangedDirs, type UnchangedDirsOptions} from './lib/incremental/unchanged-dirs.js'
export {WalkGate} from './lib/incremental/walk-gate.js'
export {
  type Compression, COMPRESSIONS, type CompressorOptions, createCompressor, defaultZstdImplementation, LAYER_MEDIA_TYPES, type ZstdImplementation,
} from './lib/layer/compress.js'
export {pathMatcher, type PathMatcher} from './lib/layer/exclude.js'
export {
  type LayerContents, type LayerEntry, type LayerEntryType, readLayerContents,
} from './lib/layer/layer-contents.js'
export {excluding, type LayerOptions, tarLayer} from './lib/layer/layer.js'
export {isWhiteout, type LayerItem, type Whiteout} from './lib/layer/names.js'
export {emptyLayerStats, type LayerStats} from './lib/layer/stats.js'
export {
  parsePaxTime, readTar, TarFormatError, type TarMember, type TarMemberType,
} from './lib/layer/tar-reader.js'
export {
  type ImageInspection,
  type ImageRecord,
  inspectImage,
  listImages,
  removeImage,
  type RemoveResult,
  tagImage,
  type TagResult,
} from './lib/oci/catalog.js'
export {applyChanges, CHANGE_INSTRUCTIONS} from './lib/oci/changes.js'
export {DigestCounter, sha256Digest} from './lib/oci/digest.js'
export {
  buildConfig,
  buildManifest,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  MEDIA_TYPES,
  REF_NAME_ANNOTATION,
  resolveCreated,
} from './lib/oci/image.js'
export {
  type ImageIndex, type IngestedBlob, layoutPath, OciLayout, type UntagResult,
} from './lib/oci/layout.js'
export {
  ARCH_NAMES, type Architecture, ARCHITECTURES, hostArch, normalizeArch,
} from './lib/oci/platform.js'
export {ImageRecords} from './lib/oci/records.js'
export {
  isLocalReference, isLoopbackRegistry, parseReference, type Reference,
} from './lib/oci/reference.js'
export {
  EGRESS_CA_FILES, isLeftOutRuntimePath, RUNTIME_FILES, type RuntimeAction, type RuntimeFile, runtimeFile, type RuntimeFileReport, withoutRuntimeFiles,
} from './lib/publish/runtime-files.js'
export {
  checkPublishable, readSecrets, SECRETS_POLICIES, SECRETS_RECORD, type SecretsPolicy,
} from './lib/publish/secrets-record.js'
export {
  FileScanner, scanningSecrets, SECRET_RULES, type SecretFinding, type SecretRule, type SecretScan,
} from './lib/publish/secrets.js'
export {
  onlyCertificates, type PemCertificate, pemCertificates, withoutCertificates,
} from './lib/publish/trust-bundle.js'
export {
  authFiles,
  type Credential,
  describeCredential,
  normalizeRegistryKey,
  resolveCredential,
} from './lib/registry/auth.js'
export {RegistryClient, type RegistryClientOptions, type RegistryRequest} from './lib/registry/client.js'
export {type RegistryResponse} from './lib/registry/http.js'
export {
  pushDestination, pushImage, type PushOptions, type PushResult,
} from './lib/registry/push.js'
export {
  QUIRK_IDS, type QuirkId, REGISTRY_QUIRKS, type RegistryQuirk,
} from './lib/registry/quirks.js'
export {
  type AxEnvelope,
  ERROR_KINDS,
  type ErrorKind,
  EXIT_CODES,
  isMicroagentError,
  MicroagentError,
  toEnvelope,
} from './lib/support/errors.js'
export {
  type BlobProgress, type CommitProgress, ProgressDisplay, type ProgressOutput, type PushProgress,
} from './lib/support/progress.js'
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
} from './lib/workspace/context.js'
export type {Lease} from './lib/workspace/lease.js'
export {
  type ImageDefaults,
  leaseStoppedWorkspace,
  openStoppedWorkspace,
  readRuntimeState,
  validateWorkspaceName,
  type Workspace,
  workspacePaths,
} from './lib/workspace/workspace.js'
