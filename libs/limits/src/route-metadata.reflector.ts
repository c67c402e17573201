import type { Type } from '@nestjs/common';
import { Reflector } from '@nestjs/core';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- Reflector's own target type
type Target = Type | Function;
type Memo = WeakMap<Target, WeakMap<Target, { value: unknown }>>;

/**
 * A Reflector that answers `getAllAndOverride(key, [handler, class])` once per route and key. The
 * stock ThrottlerGuard asks for six keys per throttler on every request, and each answer walks
 * reflect-metadata's maps up both prototype chains: 48 lookups a request for keygate's four
 * throttlers. Decorator metadata is fixed once the classes are defined, so the first answer stays
 * right for the life of the process. Other lookups go to the wrapped Reflector unchanged.
 */
export class RouteMetadataReflector extends Reflector {
  private readonly memo = new Map<unknown, Memo>();

  constructor(private readonly inner: Reflector) {
    super();
  }

  override getAllAndOverride<TResult = unknown, TKey = unknown>(key: TKey, targets: Target[]): TResult {
    const [handler, classRef] = targets;
    if (targets.length !== 2 || typeof handler !== 'function' || typeof classRef !== 'function') {
      return this.inner.getAllAndOverride<TResult, TKey>(key, targets);
    }
    let byHandler = this.memo.get(key);
    if (!byHandler) this.memo.set(key, (byHandler = new WeakMap()));
    let byClass = byHandler.get(handler);
    if (!byClass) byHandler.set(handler, (byClass = new WeakMap()));
    let entry = byClass.get(classRef);
    if (!entry) byClass.set(classRef, (entry = { value: this.inner.getAllAndOverride<TResult, TKey>(key, targets) }));
    return entry.value as TResult;
  }
}
