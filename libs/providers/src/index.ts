export * from './chat.types';
export * from './provider-adapter.interface';
export * from './provider.registry';
export * from './providers.module';
export * from './upstream.client';
export * from './upstream.error';
export * from './token-estimate';
export * from './attempts';
