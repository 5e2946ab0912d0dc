import {removeTempDirs} from './helpers/ext4.js'

// oclif picks src (not dist) only when NODE_ENV says test; set it before any Config.load().
process.env.NODE_ENV = 'test'

/** Mocha root hooks: temp folders go at the end of the run, unless KEEP_TEST_TMP=1 keeps them to look at. */
export const mochaHooks = {
  afterAll(): void {
    if (process.env.KEEP_TEST_TMP !== '1') removeTempDirs()
  },
}
