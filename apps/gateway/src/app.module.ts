import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { AuditModule } from '@keygate/audit';
import { AuthModule } from '@keygate/auth';
import { ConfigModule, type GatewayConfig } from '@keygate/config';
import { HealthModule } from '@keygate/health';
import { LimitsModule } from '@keygate/limits';
import { ObservabilityModule } from '@keygate/observability';
import { ProvidersModule } from '@keygate/providers';
import { RedisModule } from '@keygate/redis';
import { SecretsModule } from '@keygate/secrets';
import { AdminController } from './admin/admin.controller';
import { ChatCompletionsService } from './chat/chat-completions.service';
import { ChatController } from './chat/chat.controller';
import { ModelsController } from './chat/models.controller';
import { CompletionRunner } from './chat/completion-runner';
import { SseRelay } from './chat/sse-relay';
import { EmbeddingsController } from './embeddings/embeddings.controller';
import { EmbeddingsService } from './embeddings/embeddings.service';
import { GeminiController } from './gemini/gemini.controller';
import { GeminiModelsController } from './gemini/gemini-models.controller';
import { GeminiService } from './gemini/gemini.service';
import { MessagesController } from './messages/messages.controller';
import { MessagesService } from './messages/messages.service';
import { ResponsesController } from './responses/responses.controller';
import { ResponsesService } from './responses/responses.service';
import { StoredResponses } from './responses/stored-responses';
import { ProductRouter } from './routing/product.router';
import { DtoValidationPipe } from './http/dto-validation.pipe';
import { GatewayExceptionFilter } from './http/gateway-exception.filter';
import { MetricsController } from './http/metrics.controller';
import { ProtectedResourceController } from './http/protected-resource.controller';
import { RequestLifecycle } from './http/request-lifecycle';

/** The gateway: wires the libs; holds only the HTTP edge of the chat path. */
@Module({})
export class AppModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ config }),
        ObservabilityModule,
        SecretsModule,
        AuthModule,
        LimitsModule,
        ProvidersModule,
        RedisModule,
        AuditModule,
        HealthModule,
      ],
      controllers: [
        ChatController,
        EmbeddingsController,
        MessagesController,
        GeminiController,
        GeminiModelsController,
        ResponsesController,
        ModelsController,
        AdminController,
        ProtectedResourceController,
        MetricsController,
      ],
      providers: [
        ChatCompletionsService,
        SseRelay,
        CompletionRunner,
        EmbeddingsService,
        MessagesService,
        GeminiService,
        ResponsesService,
        StoredResponses,
        ProductRouter,
        RequestLifecycle,
        { provide: APP_FILTER, useClass: GatewayExceptionFilter },
        { provide: APP_PIPE, useClass: DtoValidationPipe },
      ],
    };
  }
}
