import nock from 'nock'

import {pushImage} from '../../src/lib/registry/push.js'

/** For a suite's `before`: only declared requests are answered; disableNetConnect refuses any other. */
export function onlyNock(): void {
  if (!nock.isActive()) nock.activate()
  nock.disableNetConnect()
}

/** For a suite's `after`: nock out of node:http and fetch again, so later suites talk to real servers untouched. */
export function stopNock(): void {
  nock.enableNetConnect()
  nock.restore()
}

type PushOptions = Parameters<typeof pushImage>[0]

/** A push of `image` to `host`/team/app:v1, one blob at a time, with test credentials and no backoff to speak of. */
export function pushWith(image: () => {layout: string; ref: string}, host: string, base: Partial<PushOptions> = {}) {
  return (extra: Partial<PushOptions> = {}): ReturnType<typeof pushImage> => pushImage({
    concurrency: 1,
    credential: {password: 'pw-secret', source: 'test', username: 'u'},
    destination: `${host}/team/app:v1`,
    initialBackoffMs: 1,
    layoutPath: image().layout,
    source: image().ref,
    ...base,
    ...extra,
  })
}
