import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { PdfWork, pdfPageCount } from './pdf-pages';

/**
 * Seven-page PDFs written by qpdf from one page: as they are, with object streams, linearized (object
 * streams too), and as they are with three pages rewritten by an incremental update.
 */
const fixture = (name: string): Buffer => readFileSync(join(__dirname, 'testing', 'pdf', name));

describe('pdfPageCount', () => {
  it('counts the page objects of a PDF, not its page tree nodes', () => {
    const pdf = fixture('seven-pages.pdf');
    expect(pdf.toString('latin1')).toContain('/Type /Pages');
    expect(pdfPageCount(pdf)).toBe(7);
  });

  it('counts the pages kept in Flate-compressed object streams (PDF 1.5+), where no page object is visible', () => {
    const pdf = fixture('seven-pages-object-streams.pdf');
    expect(pdf.toString('latin1')).not.toMatch(/\/Type\s*\/Page\b/);
    expect(pdfPageCount(pdf)).toBe(7);
    expect(pdfPageCount(fixture('seven-pages-linearized.pdf'))).toBe(7);
  });

  it('counts a page rewritten by an incremental update (annotated, signed) once: its versions share an object number', () => {
    // Pages 3 0 obj to 5 0 obj written again after the file's end (qpdf --check passes it; --show-npages says 7).
    const pdf = fixture('seven-pages-updated.pdf');
    expect(pdf.toString('latin1').match(/\/Type \/Page\b/g)).toHaveLength(10);
    expect(pdfPageCount(pdf)).toBe(7);
  });

  it('reads `/Type/Page` without its space, and not other names that begin with /Page', () => {
    const pdf = Buffer.from(
      '%PDF-1.7\n1 0 obj <</Type/Page>> endobj 2 0 obj <</Type /PageLabel>> endobj 3 0 obj <</Type/Page/Parent 4 0 R>> endobj',
    );
    expect(pdfPageCount(pdf)).toBe(2);
  });

  it('skips a damaged object stream and counts what it can read', () => {
    const good = deflateSync(Buffer.from('<< /Type /Page >> << /Type /Page >>'));
    const pdf = Buffer.concat([
      Buffer.from('%PDF-1.5\n1 0 obj << /Type /ObjStm /N 2 /First 8 /Filter /FlateDecode >>\nstream\n'),
      Buffer.from('not deflate data'),
      Buffer.from('\nendstream\nendobj\n2 0 obj << /Type /ObjStm /Length 5 0 R /Filter /FlateDecode >>\nstream\r\n'),
      good,
      Buffer.from('\r\nendstream\nendobj\n%%EOF'),
    ]);
    expect(pdfPageCount(pdf)).toBe(2);
  });

  it('still counts page objects a header gives one number to hide them, at least a quarter of them', () => {
    const header = '1 0 1 20 1 40 1 60 1 80 1 100 1 120 1 140 ';
    const objects = Array.from({ length: 8 }, () => '<< /Type /Page >>'.padEnd(20)).join('');
    const stream = deflateSync(Buffer.from(header + objects));
    const pdf = Buffer.concat([
      Buffer.from(`%PDF-1.5\n9 0 obj << /Type /ObjStm /N 8 /First ${header.length} /Filter /FlateDecode >>\nstream\n`),
      stream,
      Buffer.from('\nendstream\nendobj\n%%EOF'),
    ]);
    expect(pdfPageCount(pdf)).toBe(2);
  });

  it('inflates within one budget for all of a request’s PDFs, a deflate bomb charged what it was allowed', () => {
    const bomb = deflateSync(Buffer.alloc(8 << 20, 0x20));
    const pdf = (n: number) =>
      Buffer.concat([Buffer.from(`%PDF-1.5\n${n} 0 obj << /Type /ObjStm /First 0 >>\nstream\n`), bomb, Buffer.from('\nendstream\n')]);
    const work = new PdfWork(10 << 20);
    expect(pdfPageCount(pdf(1), work)).toBeUndefined();
    expect(work.inflateBytes).toBe(6 << 20); // 4 MiB, the most one stream may inflate to
    pdfPageCount(Buffer.concat([pdf(2), pdf(3)]), work);
    expect(work.inflateBytes).toBeLessThanOrEqual(0);
    // Many names of one stream inflate it once.
    const many = new PdfWork();
    const names = Buffer.concat([
      Buffer.from(`%PDF-1.5\n1 0 obj << /Type /ObjStm ${'/ObjStm '.repeat(300)}/First 0 >>\nstream\n`),
      bomb,
      Buffer.from('\nendstream\n'),
    ]);
    pdfPageCount(names, many);
    expect(many.inflateBytes).toBe((16 << 20) - (4 << 20));
  });

  it('is undefined for bytes that hold no page object (not a PDF, or one it cannot read)', () => {
    expect(pdfPageCount(Buffer.from('hello, world'))).toBeUndefined();
    expect(pdfPageCount(Buffer.alloc(0))).toBeUndefined();
    expect(pdfPageCount(Buffer.from('%PDF-1.5\n1 0 obj << /Type /ObjStm >>\nstream\n'))).toBeUndefined();
  });
});
