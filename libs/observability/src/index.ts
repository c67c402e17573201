export * from './json.logger';
export * from './observability.constants';
export * from './request-context';
export * from './observability.module';
export * from './metrics.service';
export * from './redact';
