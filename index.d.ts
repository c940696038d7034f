// Typed public entry of @punktfunk/core. The declarations are generated from
// the TypeScript sources in src/ (with their doc comments) into dist/.
export * from './dist/index'
