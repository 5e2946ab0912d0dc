import {expect} from 'chai'

import {
  isNumber, isObject, isPlainObject, isString,
} from '../../../src/lib/support/guards.js'

describe('guards', () => {
  it('takes only JSON-style objects as plain', () => {
    expect(isPlainObject(JSON.parse('{"a":1}'))).to.equal(true)
    expect(isPlainObject(Object.create(null))).to.equal(true)
    for (const value of [null, [], 'x', 1, new Date(0), new Map(), () => {}]) expect(isPlainObject(value), String(value)).to.equal(false)
  })

  it('tells strings, numbers and objects apart', () => {
    expect([isString(''), isString('a'), isString(1)]).to.deep.equal([true, true, false])
    expect([isNumber(0), isNumber(Number.NaN), isNumber('1')]).to.deep.equal([true, false, false])
    expect([isObject([]), isObject(() => {}), isObject(null), isObject('x')]).to.deep.equal([true, true, false, false])
  })
})
