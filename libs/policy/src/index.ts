export * from './parameter-policy';
export * from './end-user-id';
export * from './gemini-policy';
