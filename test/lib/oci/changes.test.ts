import {expect} from 'chai'

import {applyChanges} from '../../../src/lib/oci/changes.js'
import {rejection} from '../../helpers/assert.js'

describe('changes (commit --change and --label)', () => {
  it('applies each instruction as docker commit does', () => {
    const result = applyChanges(
      {
        Cmd: ['old'], Env: ['PATH=/bin', 'A=1'], ExposedPorts: ['22/tcp'], Labels: {keep: 'yes'}, WorkingDir: '/srv',
      },
      [
        String.raw`ENV A=2 B="two words" C=three\ words`,
        'ENV LEGACY some value',
        'cmd ["bash", "-l"]',
        'ENTRYPOINT /entry.sh --flag',
        'WORKDIR app',
        'USER 1000:1000',
        'LABEL version=1.2 "description"="a b"',
        'EXPOSE 8080 53/UDP 9000-9002',
        'VOLUME /data /cache',
        'VOLUME ["/logs"]',
        'STOPSIGNAL SIGINT',
      ],
      ['team=infra', 'empty='],
    )
    expect(result).to.deep.equal({
      Cmd: ['bash', '-l'],
      Entrypoint: ['/bin/sh', '-c', '/entry.sh --flag'],
      Env: ['PATH=/bin', 'A=2', 'B=two words', 'C=three words', 'LEGACY=some value'],
      ExposedPorts: ['22/tcp', '8080/tcp', '53/udp', '9000-9002/tcp'],
      Labels: {
        description: 'a b', empty: '', keep: 'yes', team: 'infra', version: '1.2',
      },
      StopSignal: 'SIGINT',
      User: '1000:1000',
      Volumes: ['/data', '/cache', '/logs'],
      WorkingDir: '/srv/app',
    })
  })

  it('drops an inherited CMD when ENTRYPOINT is set without a CMD, and leaves the input alone', () => {
    const base = {Cmd: ['serve']}
    expect(applyChanges(base, ['ENTRYPOINT ["/init"]'])).to.deep.equal({Entrypoint: ['/init']})
    expect(base).to.deep.equal({Cmd: ['serve']})
    expect(applyChanges(base, ['CMD ["x"]', 'ENTRYPOINT ["/init"]'])).to.deep.equal({Cmd: ['x'], Entrypoint: ['/init']})
  })

  it('refuses what it cannot apply with a usage error naming the change', async () => {
    const bad = [
      'RUN apt-get update', 'FROM x', 'ENV', 'ENV =x', 'CMD ["a", 1]', 'CMD [not json', 'EXPOSE http', 'STOPSIGNAL now', 'ENV A="open',
    ]
    for (const change of bad) {
      const error = await rejection(Promise.resolve().then(() => applyChanges({}, [change])))
      expect(error.exitCode, change).to.equal(2)
      expect(error.message, change).to.contain(`--change "${change}"`)
    }

    const label = await rejection(Promise.resolve().then(() => applyChanges({}, [], ['novalue'])))
    expect(label.message).to.contain('--label "novalue"')
  })
})
