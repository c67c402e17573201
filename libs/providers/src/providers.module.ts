import { Module } from '@nestjs/common';
import { ObservabilityModule } from '@keygate/observability';
import { AnthropicAdapter } from './anthropic.adapter';
import { GeminiAdapter } from './gemini.adapter';
import { OpenAiAdapter } from './openai.adapter';
import { ProviderAdapter } from './provider-adapter.interface';
import { ProviderRegistry } from './provider.registry';
import { UpstreamClient } from './upstream.client';

/**
 * The upstream providers. A new provider is one adapter class added to `ADAPTERS`.
 */
const ADAPTERS = [OpenAiAdapter, AnthropicAdapter, GeminiAdapter];

@Module({
  imports: [ObservabilityModule],
  providers: [
    UpstreamClient,
    ...ADAPTERS,
    { provide: ProviderAdapter, useFactory: (...adapters: ProviderAdapter[]) => adapters, inject: ADAPTERS },
    ProviderRegistry,
  ],
  exports: [ProviderRegistry, UpstreamClient, AnthropicAdapter, OpenAiAdapter, GeminiAdapter],
})
export class ProvidersModule {}
