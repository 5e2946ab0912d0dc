import {
  createServer, type IncomingMessage, request, type Server, type ServerResponse,
} from 'node:http'
import {type AddressInfo} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

/**
 * One kind of trouble, for the first `times` requests that `match` (Infinity: for all of them):
 * - `status`: answer with that status (503, 500, 413...) without asking the registry, once the body is in;
 * - `reset`: forward, then cut both connections once `afterBytes` of the request body went through;
 * - `delay`: wait `ms` before forwarding.
 */
export type Fault = {match: (method: string, path: string) => boolean; times: number} & (
	| {afterBytes: number; kind: 'reset'}
	| {kind: 'delay'; ms: number}
	| {kind: 'status'; status: number}
)

export interface FaultProxy {
  /** `host:port` to push to. */
  host: string
  /** Every request seen, with the fault it got, if any. */
  log: {fault?: Fault['kind']; method: string; path: string}[]
  stop(): Promise<void>
}

/**
 * An HTTP proxy in front of a real registry that injects faults: what networks and overloaded registries
 * do, on demand. The Host header is passed on, so the registry's upload Locations point back at the proxy.
 */
export async function startFaultProxy(target: string, faults: Fault[]): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(':')
  const log: FaultProxy['log'] = []
  const forward = (incoming: IncomingMessage, response: ServerResponse, cutAfter?: number): void => {
    const upstream = request({
      headers: incoming.headers, host: targetHost, method: incoming.method, path: incoming.url, port: Number(targetPort),
    })
    upstream.on('response', answer => {
      response.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(response)
    })
    upstream.on('error', () => response.destroy())
    let passed = 0
    incoming.on('data', (chunk: Buffer) => {
      passed += chunk.length
      if (cutAfter !== undefined && passed >= cutAfter) {
        upstream.destroy()
        incoming.socket.destroy()
        return
      }

      upstream.write(chunk)
    })
    incoming.on('end', () => upstream.end())
  }

  const server: Server = createServer(async (incoming, response) => {
    const method = incoming.method ?? 'GET'
    const path = (incoming.url ?? '/').split('?')[0]
    const fault = faults.find(f => f.times > 0 && f.match(method, path))
    log.push({fault: fault?.kind, method, path})
    if (!fault) return forward(incoming, response)
    fault.times--
    switch (fault.kind) {
    case 'delay': {
      await sleep(fault.ms)
      return forward(incoming, response)
    }

    case 'reset': {
      return forward(incoming, response, fault.afterBytes)
    }

    case 'status': {
      // Answered once the body is in, as a proxy with lingering close does: answering mid-body makes node:http
      // close the socket, and the client then sees a reset instead of the status, at random.
      incoming.resume()
      incoming.on('end', () => {
        response.writeHead(fault.status, {'content-type': 'application/json', 'retry-after': '0'})
        response.end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}')
      })
    }
    }
  })
  await new Promise<void>(resolve => {
    server.listen(0, '127.0.0.1', resolve)
  })
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    async stop() {
      server.closeAllConnections()
      await new Promise(resolve => {
        server.close(resolve)
      })
    },
  }
}
