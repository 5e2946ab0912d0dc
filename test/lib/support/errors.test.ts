import {expect} from 'chai'

import {
  asMicroagentError, EXIT_CODES, MicroagentError, toEnvelope, usageError,
} from '../../../src/lib/support/errors.js'

describe('errors', () => {
  it('builds the AX envelope with the documented fields', () => {
    const envelope = toEnvelope(usageError('bad thing'), 'req-1')
    expect(envelope).to.deep.equal({
      error: {
        code: 'USAGE',
        correlation_id: 'req-1',
        exit_code: 2,
        kind: 'permanent',
        message: 'bad thing',
        remediation: 'Correct the command arguments and retry.',
        retryable: false,
      },
      ok: false,
    })
  })

  it('marks transient and resource_exhausted as retryable', () => {
    const transient = new MicroagentError('x', {
      code: 'X', exit: 'transient', kind: 'transient', retryAfterMs: 1000,
    })
    expect(transient.retryable).to.equal(true)
    expect(toEnvelope(transient).error).to.include({exit_code: 75, retry_after_ms: 1000, retryable: true})
    expect(toEnvelope(transient).error.correlation_id).to.match(/^req-\d+-[0-9a-f]{6}$/)
  })

  it('classifies system errors', () => {
    const enospc = Object.assign(new Error('write failed'), {code: 'ENOSPC'})
    expect(asMicroagentError(enospc)).to.include({exitCode: EXIT_CODES.layout, kind: 'resource_exhausted'})
    const eacces = Object.assign(new Error('open failed'), {code: 'EACCES'})
    expect(asMicroagentError(eacces)).to.include({kind: 'policy_denied'})
    expect(asMicroagentError(new Error('boom'))).to.include({exitCode: 1, kind: 'permanent'})
  })

  it('has one distinct exit code per failure class', () => {
    const codes = Object.values(EXIT_CODES)
    expect(new Set(codes).size).to.equal(codes.length)
  })
})
