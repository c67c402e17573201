export * from './failure-class';
export * from './error-codes';
export * from './gateway.error';
