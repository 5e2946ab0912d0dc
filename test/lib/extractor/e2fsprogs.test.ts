import {expect} from 'chai'
import {chmodSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {findDebugfs} from '../../../src/lib/extractor/e2fsprogs.js'
import {tempDir} from '../../helpers/ext4.js'

describe('e2fsprogs', () => {
  it('finds debugfs on PATH first', async () => {
    const dir = path.join(tempDir(), 'bin')
    mkdirSync(dir)
    writeFileSync(path.join(dir, 'debugfs'), '#!/bin/sh\n')
    chmodSync(path.join(dir, 'debugfs'), 0o755)
    expect(await findDebugfs({PATH: dir})).to.equal(path.join(dir, 'debugfs'))
  })

  it('skips files that are not executable', async () => {
    const dir = path.join(tempDir(), 'bin')
    mkdirSync(dir)
    writeFileSync(path.join(dir, 'debugfs'), '')
    expect(await findDebugfs({PATH: dir})).not.to.equal(path.join(dir, 'debugfs'))
  })
})
