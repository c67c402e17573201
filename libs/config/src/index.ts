export * from './config.error';
export * from './config.loader';
export * from './config.module';
export * from './gateway-config';
export * from './model-price';
export * from './policy.loader';
export * from './policy.types';
