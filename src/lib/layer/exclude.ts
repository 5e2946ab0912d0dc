import {usageError} from '../support/errors.js'

/**
 * `--exclude` patterns, anchored at the image root like .dockerignore: `*` and `?` stay within one path
 * component, `**` spans any number of them, `[...]` is a character class. A leading `/` or `./` is
 * ignored. Matching works on the raw name bytes (patterns are taken as UTF-8), so names that are not
 * valid UTF-8 can still be matched by wildcards.
 */
export interface PathMatcher {
  (path: Buffer): boolean
  readonly patterns: readonly string[]
}

function escapeRegExp(text: string): string {
  return text.replaceAll(/[$()*+.?[\\\]^{|}]/g, String.raw`\$&`)
}

/** Compiles one pattern into a regular expression over latin1-decoded bytes. */
function compile(pattern: string): RegExp {
  const bytes = Buffer.from(pattern.replace(/^(\.?\/)+/, ''), 'utf8').toString('latin1').replace(/\/+$/, '')
  if (bytes === '' || bytes.split('/').includes('..')) {
    throw usageError(`--exclude "${pattern}" does not name anything inside the image`, 'Give a path or glob relative to the image root, e.g. --exclude "var/cache/**".')
  }

  let source = ''
  for (let i = 0; i < bytes.length; i++) {
    const char = bytes[i]
    if (char === '*' && bytes[i + 1] === '*') {
      const slashAfter = bytes[i + 2] === '/'
      // `**/` matches zero or more whole components; a trailing or inner `**` anything at all.
      source += slashAfter ? '(?:[^]*/)?' : '[^]*'
      i += slashAfter ? 2 : 1
    } else switch (char) {
    case '*': {
      source += '[^/]*'

      break;
    }

    case '?': {
      source += '[^/]'

      break;
    }

    case '[': {
      const end = bytes.indexOf(']', i + 2)
      if (end === -1) throw usageError(`--exclude "${pattern}" has an unclosed [`)
      let body = bytes.slice(i + 1, end)
      const negated = body.startsWith('!') || body.startsWith('^')
      if (negated) body = body.slice(1)
      source += `[${negated ? '^/' : ''}${body.replaceAll(/[\\\]^]/g, String.raw`\$&`)}]`
      i = end

      break;
    }

    default: {source += char === '\\' && i + 1 < bytes.length ? escapeRegExp(bytes[++i]) : escapeRegExp(char);
    }
    }
  }

  return new RegExp(`^${source}$`, 's')
}

/** One matcher for all the patterns; undefined when there are none, so callers skip the check entirely. */
export function pathMatcher(patterns: readonly string[] = []): PathMatcher | undefined {
  if (patterns.length === 0) return undefined
  const expressions = patterns.map(p => compile(p))
  const matcher = (path: Buffer): boolean => {
    const text = path.toString('latin1')
    return expressions.some(expression => expression.test(text))
  }

  return Object.assign(matcher, {patterns: [...patterns]})
}
