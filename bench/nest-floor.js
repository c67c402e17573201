#!/usr/bin/env node
'use strict';
// The benchmark's framework floor: the least a NestJS + Fastify proxy of chat completions must do,
// and nothing of keygate. One controller route reads the JSON body as bytes and parses it, sends it
// to the upstream with undici, and answers the upstream's JSON after parsing it (as keygate does to
// read the usage); a streamed request is piped through as bytes. No authentication, limits,
// validation, translation, audit, logging or metrics. Between bare (node:http) and the gateway,
// it shows how much of the gateway's cost is the framework's and how much is the gateway's own.
//
// Env: UPSTREAM (default http://127.0.0.1:8090), PORT (default 0 = any free port), HOST (127.0.0.1).
// Prints one JSON line containing "listening" once it accepts connections.
require('reflect-metadata');
const { Controller, HttpCode, Module, Post, Req, Res } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { FastifyAdapter } = require('@nestjs/platform-fastify');
const { Pool } = require('undici');

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:8090';
const port = Number.parseInt(process.env.PORT ?? '0', 10);
const host = process.env.HOST ?? '127.0.0.1';
const pool = new Pool(upstream, { pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 });

class FloorController {
  async chat(request, reply) {
    const body = JSON.parse(request.body.toString('utf8'));
    const res = await pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { authorization: request.headers.authorization ?? '', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (body.stream === true) {
      reply.hijack();
      reply.raw.writeHead(res.statusCode, { 'content-type': res.headers['content-type'] ?? 'text/event-stream' });
      for await (const chunk of res.body) reply.raw.write(chunk);
      reply.raw.end();
      return;
    }
    const text = await res.body.text();
    JSON.parse(text);
    await reply.status(res.statusCode).type('application/json').send(text);
  }
}
// Decorators applied by hand: this file runs as plain JavaScript, like the bench.
Reflect.decorate(
  [Post('v1/chat/completions'), HttpCode(200)],
  FloorController.prototype,
  'chat',
  Object.getOwnPropertyDescriptor(FloorController.prototype, 'chat'),
);
Req()(FloorController.prototype, 'chat', 0);
Res()(FloorController.prototype, 'chat', 1);
Reflect.decorate([Controller()], FloorController);

class FloorModule {}
Reflect.decorate([Module({ controllers: [FloorController] })], FloorModule);

async function main() {
  const app = await NestFactory.create(FloorModule, new FastifyAdapter({ logger: false }), { bodyParser: false, logger: false });
  const fastify = app.getHttpAdapter().getInstance();
  // As in keygate: the JSON body arrives as bytes and is parsed by the handler's side.
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  await app.listen({ port, host });
  const address = app.getHttpServer().address();
  process.stdout.write(`${JSON.stringify({ message: 'nest-floor listening', port: address.port, upstream })}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 2000).unref();
    app
      .close()
      .then(() => pool.close())
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Started by the bench with an IPC channel: never outlive it.
  if (process.send) process.on('disconnect', stop);
}

main().catch((error) => {
  process.stderr.write(`${JSON.stringify({ message: 'nest-floor failed', error: error.message })}\n`);
  process.exit(1);
});
