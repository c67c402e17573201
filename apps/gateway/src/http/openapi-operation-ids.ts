import type { OpenAPIObject } from '@nestjs/swagger';

/**
 * Names an operation served under several paths by its path's first segment: Nest's Swagger module
 * numbers such aliases (`GeminiController_generateContent[0]` under `/v1beta`, `[1]` under `/v1`),
 * and a client generator makes method names of operation ids, where brackets are no identifier
 * (and the numbers say nothing of the path). `GeminiController_generateContent_v1beta` and `…_v1`.
 */
export function documentOperationIds(document: OpenAPIObject): void {
  for (const [path, item] of Object.entries(document.paths)) {
    const prefix = path.split('/')[1]?.replace(/\W/g, '_') ?? '';
    for (const operation of Object.values(item) as Array<{ operationId?: string } | undefined>) {
      if (operation?.operationId) operation.operationId = operation.operationId.replace(/\[\d+\]$/, `_${prefix}`);
    }
  }
}
