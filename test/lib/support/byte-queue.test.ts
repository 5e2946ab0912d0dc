import {expect} from 'chai'

import {ByteQueue} from '../../../src/lib/support/byte-queue.js'

describe('support/byte-queue', () => {
  it('hands bytes out in the order they came, across growth and partial reads', () => {
    const queue = new ByteQueue()
    const sent: number[] = []
    let next = 0
    let read = 0
    for (let round = 0; round < 200; round++) {
      const chunk = Buffer.alloc(1 + ((round * 7919) % 5000), 0)
      for (let i = 0; i < chunk.length; i++) chunk[i] = (next++) & 0xFF
      sent.push(...chunk)
      queue.push(chunk)
      const view = queue.view()
      const take = Math.floor(view.length / 2)
      expect([...view.subarray(0, take)]).to.deep.equal(sent.slice(read, read + take))
      queue.consume(take)
      read += take
    }

    expect([...queue.view()]).to.deep.equal(sent.slice(read))
  })

  it('gives back the room a huge reply took once it is read', () => {
    const queue = new ByteQueue()
    queue.push(Buffer.alloc(8 * 1024 * 1024, 1))
    queue.consume(8 * 1024 * 1024)
    expect(queue.view().length).to.equal(0)
    queue.push(Buffer.from('ab'))
    expect(queue.view().toString()).to.equal('ab')
    expect(queue.view().buffer.byteLength, 'a small buffer again').to.be.below(1024 * 1024)
  })
})
