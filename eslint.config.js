import oclif from 'eslint-config-oclif'

export default [
  {ignores: ['dist/', 'tmp/', 'coverage/', 'node_modules/']},
  ...oclif,
  {
    rules: {
      // Process exit codes and byte offsets are this plugin's domain; naming each one hurts more than it helps.
      'no-mixed-operators': 'off',
      '@stylistic/no-mixed-operators': 'off',
      // Superblock flags, tar modes and ext4 time fields are bit fields.
      'no-bitwise': 'off',
      'unicorn/no-array-reduce': 'off',
      'unicorn/prefer-string-replace-all': 'off',
      // Loops that await in order are how a stream of entries is consumed here.
      'no-await-in-loop': 'off',
      camelcase: 'off',
      'perfectionist/sort-objects': 'off',
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'no-unused-expressions': 'off',
      '@typescript-eslint/no-unused-expressions': 'off',
      'max-nested-callbacks': 'off',
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {globals: {module: 'writable', process: 'readonly', require: 'readonly'}, sourceType: 'commonjs'},
    rules: {'@typescript-eslint/no-require-imports': 'off'},
  },
  {
    // fetch, Response and web streams are stable in practice on Node 20 (the plugin's table marks them
    // experimental until 21-23); the registry client needs them, and the tests run them on Node 20.
    files: ['src/lib/registry/**/*.ts', 'test/**/*.ts'],
    rules: {'n/no-unsupported-features/node-builtins': 'off'},
  },
  {
    // TypeScript checks names itself, including DOM-style globals such as RequestInit.
    files: ['**/*.ts'],
    rules: {'no-undef': 'off'},
  },
  {
    // Scripts are linear programs (demo, bench); their helpers read better next to their use.
    files: ['scripts/**/*.mjs'],
    rules: {
      '@stylistic/max-len': 'off',
      'max-params': 'off',
      'mocha/no-top-level-hooks': 'off',
      'n/no-unsupported-features/node-builtins': 'off',
      'unicorn/consistent-function-scoping': 'off',
      'unicorn/no-array-push-push': 'off',
    },
  },
  {
    // The README's examples import the package by name, as a plugin would; test/tsconfig.json maps that name
    // to src (and tsc checks them), while eslint's resolver would need a built dist/.
    files: ['test/fixtures/readme/**/*.ts'],
    rules: {'import/no-unresolved': 'off'},
  },
]
