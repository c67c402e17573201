export * from './blocks.service';
export * from './counter.store';
export * from './failover.counter-store';
export * from './limits.module';
export * from './memory.counter-store';
export * from './quota.service';
export * from './redis.counter-store';
export * from './request-limits.guard';
