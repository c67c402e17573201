export * from './parameter-policy';
