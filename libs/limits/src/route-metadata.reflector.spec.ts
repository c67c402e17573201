import { Reflector } from '@nestjs/core';
import { SkipThrottle, Throttle } from '@nestjs/throttler';
import { THROTTLER_LIMIT, THROTTLER_SKIP } from '@nestjs/throttler/dist/throttler.constants';
import { RouteMetadataReflector } from './route-metadata.reflector';

@SkipThrottle({ user_qps: true })
class Routes {
  @Throttle({ user_qps: { limit: 7, ttl: 1000 } })
  limited(): void {}

  plain(): void {}
}

describe('RouteMetadataReflector', () => {
  const inner = new Reflector();
  const routes = Routes.prototype;

  it('answers what the wrapped Reflector answers, undefined included', () => {
    const memo = new RouteMetadataReflector(inner);
    for (const handler of [routes.limited, routes.plain]) {
      for (const key of [THROTTLER_LIMIT + 'user_qps', THROTTLER_SKIP + 'user_qps', THROTTLER_LIMIT + 'product_qps']) {
        expect(memo.getAllAndOverride(key, [handler, Routes])).toEqual(inner.getAllAndOverride(key, [handler, Routes]));
      }
    }
    expect(memo.getAllAndOverride(THROTTLER_LIMIT + 'user_qps', [routes.limited, Routes])).toBe(7);
    expect(memo.getAllAndOverride(THROTTLER_LIMIT + 'user_qps', [routes.plain, Routes])).toBeUndefined();
    expect(memo.getAllAndOverride(THROTTLER_SKIP + 'user_qps', [routes.plain, Routes])).toBe(true);
  });

  it('reads each key of a route once, however many requests ask', () => {
    const counted = new Reflector();
    const spy = jest.spyOn(counted, 'getAllAndOverride');
    const memo = new RouteMetadataReflector(counted);
    for (let i = 0; i < 5; i++) {
      memo.getAllAndOverride(THROTTLER_LIMIT + 'user_qps', [routes.limited, Routes]);
      memo.getAllAndOverride(THROTTLER_LIMIT + 'user_qps', [routes.plain, Routes]);
      memo.getAllAndOverride(THROTTLER_SKIP + 'user_qps', [routes.plain, Routes]);
    }
    expect(spy).toHaveBeenCalledTimes(3);
  });

  it('passes lookups that are not a (handler, class) pair straight through', () => {
    const counted = new Reflector();
    const spy = jest.spyOn(counted, 'getAllAndOverride');
    const memo = new RouteMetadataReflector(counted);
    memo.getAllAndOverride(THROTTLER_SKIP + 'user_qps', [Routes]);
    memo.getAllAndOverride(THROTTLER_SKIP + 'user_qps', [Routes]);
    expect(spy).toHaveBeenCalledTimes(2);
    expect(memo.getAllAndOverride(THROTTLER_SKIP + 'user_qps', [Routes])).toBe(true);
  });
});
