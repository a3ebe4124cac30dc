'use strict';
/** Tests run against real PostgreSQL clusters; see test/harness. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.[tj]s$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }],
  },
  // p-queue and p-timeout ship ES modules only; jest's module loader needs them as CommonJS.
  transformIgnorePatterns: ['/node_modules/(?!(p-queue|p-timeout)/)'],
  // sources use NodeNext-style '.js' specifiers for dynamic imports
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testTimeout: 120000,
  maxWorkers: 2,
};
