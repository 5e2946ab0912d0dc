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
]
