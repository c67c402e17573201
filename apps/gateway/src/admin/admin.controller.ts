import { Body, Controller, Delete, Get, HttpCode, Inject, Post, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { ThrottlerGuard } from '@nestjs/throttler';
import { AdminScopeGuard, CredentialGuard, type Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { BlocksService, CounterStore, utcDay, type Block, type DailyUsage } from '@keygate/limits';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { CurrentPrincipal } from '../http/request.decorators';
import { BlockDto, CreateBlockDto } from './admin.dto';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * Operator routes: blocks (in force on every replica within a second) and daily usage. A
 * credential with the `keygate.admin` scope is required; a per-address throttle runs first.
 */
@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(ThrottlerGuard, CredentialGuard, AdminScopeGuard)
@Controller('admin')
export class AdminController {
  constructor(
    private readonly blocks: BlocksService,
    @Inject(CounterStore) private readonly counters: CounterStore,
  ) {}

  @Post('blocks')
  @HttpCode(201)
  @ApiOperation({ summary: 'Block a product, or one user of a product' })
  @ApiOkResponse({ type: BlockDto })
  @ApiGatewayErrors()
  create(@Body() body: CreateBlockDto, @CurrentPrincipal() admin: Principal): Promise<Block> {
    const now = Date.now();
    return this.blocks.create({
      product: body.product,
      user: body.user ?? null,
      reason: body.reason,
      createdAt: new Date(now).toISOString(),
      expiresAt: body.expires_in_seconds ? new Date(now + body.expires_in_seconds * 1000).toISOString() : null,
      createdBy: admin.user,
    });
  }

  @Get('blocks')
  @ApiOperation({ summary: 'List the blocks in force' })
  @ApiOkResponse({ type: [BlockDto] })
  list(): { data: Block[] } {
    return { data: this.blocks.list() };
  }

  @Delete('blocks')
  @ApiOperation({ summary: 'Lift a block' })
  @ApiQuery({ name: 'product', required: true })
  @ApiQuery({ name: 'user', required: false })
  async remove(@Query('product') product?: string, @Query('user') user?: string): Promise<{ deleted: boolean }> {
    if (!product) throw new GatewayError('invalid_request', 'product is required', { param: 'product' });
    const deleted = await this.blocks.remove(product, user ?? null);
    if (!deleted) throw new GatewayError('route_not_found', 'no such block');
    return { deleted };
  }

  @Get('usage')
  @ApiOperation({ summary: "A product's requests and tokens for one UTC day, in total and per user" })
  @ApiQuery({ name: 'product', required: true })
  @ApiQuery({ name: 'date', required: false, description: 'YYYY-MM-DD (UTC); today by default' })
  async usage(@Query('product') product?: string, @Query('date') date?: string): Promise<{ product: string; date: string } & DailyUsage> {
    if (!product) throw new GatewayError('invalid_request', 'product is required', { param: 'product' });
    if (date !== undefined && !DAY.test(date)) throw new GatewayError('invalid_request', 'date must be YYYY-MM-DD', { param: 'date' });
    const day = date ?? utcDay(Date.now());
    return { product, date: day, ...(await this.counters.usage(product, day)) };
  }
}
