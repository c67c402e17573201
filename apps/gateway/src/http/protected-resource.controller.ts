import { Controller, Get, Inject, Req } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ADMIN_SCOPE } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import type { FastifyRequest } from 'fastify';
import { publicBaseUrl } from './resource-url';

/** RFC 9728 OAuth 2.0 Protected Resource Metadata: how a client learns where to get a token. */
@ApiTags('discovery')
@Controller('.well-known/oauth-protected-resource')
export class ProtectedResourceController {
  constructor(@Inject(GatewayConfig) private readonly config: GatewayConfig) {}

  @Get()
  @ApiOperation({ summary: 'RFC 9728 protected-resource metadata' })
  @ApiOkResponse({ description: 'resource, authorization_servers, bearer_methods_supported, scopes_supported' })
  metadata(@Req() request: FastifyRequest): Record<string, unknown> {
    const base = publicBaseUrl(request, this.config.resource.publicUrl);
    return {
      resource: base,
      authorization_servers: this.config.resource.authorizationServers,
      bearer_methods_supported: ['header'],
      scopes_supported: [ADMIN_SCOPE],
      resource_name: 'keygate',
      resource_documentation: `${base}/docs`,
    };
  }
}
