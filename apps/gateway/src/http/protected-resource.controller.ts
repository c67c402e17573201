import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiProperty, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ADMIN_SCOPE } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorBodyDto } from './api-errors.decorator';
import { requestPath } from './request-lifecycle';
import { METADATA_PATH, publicBaseUrl, resourcePath } from './resource-url';

/** RFC 9728's metadata document, as keygate answers it. */
class ProtectedResourceMetadataDto {
  @ApiProperty({ example: 'https://keygate.example.com', description: 'The resource: keygate’s public URL' }) resource!: string;
  @ApiProperty({
    type: [String],
    example: ['https://idp.example.com'],
    description: 'Where to get a token (API_KEY_SERVER_AUTHORIZATION_SERVERS); may be empty',
  })
  authorization_servers!: string[];
  @ApiProperty({ type: [String], example: ['header'] }) bearer_methods_supported!: string[];
  @ApiProperty({ type: [String], example: [ADMIN_SCOPE] }) scopes_supported!: string[];
  @ApiProperty({ example: 'keygate' }) resource_name!: string;
  @ApiProperty({ example: 'https://keygate.example.com/docs' }) resource_documentation!: string;
}

/**
 * RFC 9728 OAuth 2.0 Protected Resource Metadata: how a client learns where to get a token. A
 * public URL with a path (`https://gw.example.com/keygate`) has its metadata at the well-known path
 * followed by that path (§3.1), served here too for a balancer that passes it on unchanged; the
 * bare well-known path stays served for one that strips the gateway's prefix.
 */
@ApiTags('discovery')
@Controller('.well-known/oauth-protected-resource')
export class ProtectedResourceController {
  constructor(@Inject(GatewayConfig) private readonly config: GatewayConfig) {}

  @Get()
  // `security: []`: public, said so (an operation without security is unsaid, which linters such as Redocly refuse).
  @ApiOperation({ summary: 'RFC 9728 protected-resource metadata', security: [] })
  @ApiOkResponse({
    type: ProtectedResourceMetadataDto,
    description: 'The resource, its authorization servers and the bearer methods it takes',
  })
  metadata(@Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Record<string, unknown> {
    return this.document(request, reply);
  }

  @Get('*')
  @ApiOperation({ summary: 'RFC 9728 protected-resource metadata of a public URL with a path (API_KEY_SERVER_PUBLIC_URL)', security: [] })
  // Fastify's wildcard (`*`, request.params['*']) is documented under the name Nest's swagger module
  // gives it in the path (`{path}`), so Swagger UI's Try it out can fill it in.
  @ApiParam({
    name: 'path',
    type: String,
    example: 'keygate',
    description:
      "The public URL's path (API_KEY_SERVER_PUBLIC_URL) without its leading slash, e.g. keygate for " +
      'https://gw.example.com/keygate. Swagger UI percent-encodes a slash in it: a path of several segments ' +
      '(keygate/v2) must be sent as it is, e.g. with curl.',
  })
  @ApiOkResponse({ type: ProtectedResourceMetadataDto, description: 'As the bare well-known path' })
  @ApiResponse({
    status: 404,
    description: "`route_not_found`: not the public URL's path",
    type: ErrorBodyDto,
    // The schema's own example is a 401's.
    example: new GatewayError('route_not_found', 'no such resource').toBody(),
  })
  metadataOfPath(@Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Record<string, unknown> {
    const configured = this.config.resource.publicUrl;
    // As sent (percent-encoded), to compare with the public URL's path as a URL holds it.
    const asked = requestPath(request.url).slice(METADATA_PATH.length).replace(/\/+$/, '');
    if (asked !== (configured ? resourcePath(configured) : '')) throw new GatewayError('route_not_found', 'no such resource');
    return this.document(request, reply);
  }

  /**
   * The document, with how long it may be kept: an hour when the public URL is configured (it
   * changes with a rollout); never stored when it is derived from the request's own headers, which
   * a shared cache must not hand to another caller.
   */
  private document(request: FastifyRequest, reply: FastifyReply): Record<string, unknown> {
    const configured = this.config.resource.publicUrl;
    void reply.header('cache-control', configured ? 'public, max-age=3600' : 'no-store');
    const base = publicBaseUrl(request, configured);
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
