// Type guards for the JSON this plugin writes itself (the OCI layout, its push history), read on the start path of
// every image command. JSON from elsewhere is checked with @sindresorhus/is (./is.js), which is imported only when
// such JSON is read: its import costs about 13 ms that `image list` need not pay.

/** A plain `{}` object, as JSON.parse makes: not null, not an array, not a class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const prototype = Object.getPrototypeOf(value) as unknown
  return prototype === null || prototype === Object.prototype
}

export function isString(value: unknown): value is string {
  return typeof value === 'string'
}

/** A finite or infinite number, but not NaN. */
export function isNumber(value: unknown): value is number {
  return typeof value === 'number' && !Number.isNaN(value)
}

/** Anything that can carry properties: objects, arrays and functions. */
export function isObject(value: unknown): value is object {
  return (typeof value === 'object' && value !== null) || typeof value === 'function'
}
