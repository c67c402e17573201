import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { contextOf, type RequestContext } from '@keygate/observability';
import type { FastifyRequest } from 'fastify';

/** The request's {@link RequestContext}, created by the lifecycle hook. */
export const Ctx = createParamDecorator((_data: unknown, host: ExecutionContext): RequestContext => {
  const ctx = contextOf(host.switchToHttp().getRequest<FastifyRequest>().raw);
  if (!ctx) throw new Error('request context missing: RequestLifecycle hook not installed');
  return ctx;
});

/** The authenticated {@link Principal} set by the credential guard. */
export const CurrentPrincipal = createParamDecorator((_data: unknown, host: ExecutionContext): Principal => {
  return host.switchToHttp().getRequest<FastifyRequest & { user: Principal }>().user;
});

/** The size in bytes of the raw request body. */
export const BodyBytes = createParamDecorator((_data: unknown, host: ExecutionContext): number => {
  const request = host.switchToHttp().getRequest<FastifyRequest & { rawBody?: Buffer }>();
  return request.rawBody?.length ?? Number(request.headers['content-length'] ?? 0);
});
