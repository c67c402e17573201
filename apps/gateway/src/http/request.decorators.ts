import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { contextOf, type RequestContext } from '@keygate/observability';
import type { FastifyRequest } from 'fastify';

/** The authenticated {@link Principal} set by the credential guard. */
export const CurrentPrincipal = createParamDecorator((_data: unknown, host: ExecutionContext): Principal => {
  return host.switchToHttp().getRequest<FastifyRequest & { user: Principal }>().user;
});

/** What a model route (chat, embeddings) needs of its request besides the validated body. */
export interface ModelCall {
  /** The request's {@link RequestContext}, created by the lifecycle hook. */
  ctx: RequestContext;
  /** The authenticated caller, set by the credential guard. */
  principal: Principal;
  /** The size in bytes of the raw request body. */
  bodyBytes: number;
}

/**
 * The {@link ModelCall} of a request the guards admitted. Read from `@Req()` rather than through
 * custom parameter decorators: Nest runs every custom decorator's value through the pipes, several
 * promises each, and a model route is the hot path.
 */
export function modelCall(request: FastifyRequest): ModelCall {
  const ctx = contextOf(request.raw);
  if (!ctx) throw new Error('request context missing: RequestLifecycle hook not installed');
  // Ended by keygate before its handler ran (a block came while its body arrived): told why at once.
  if (ctx.endedBy) throw ctx.endedBy;
  const { user: principal, rawBody } = request as FastifyRequest & { user: Principal; rawBody?: Buffer };
  return { ctx, principal, bodyBytes: rawBody?.length ?? Number(request.headers['content-length'] ?? 0) };
}
