/** The README's command examples must run from a clone: no path outside the repository (a clone has nothing beside it). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
/** Lines of the sh code blocks that run the tool. */
const commands = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n')).filter((l) => /^(npx )?trt-calib\b/.test(l.trim()) || /&& npx trt-calib\b/.test(l));

describe('README examples', () => {
  it('name no path outside the repository', () => {
    expect(commands.length).toBeGreaterThan(10);
    // Any relative path that climbs out of the clone (`../x`) names something a fresh clone does not have.
    expect(commands.filter((l) => l.split(/\s+/).some((word) => /^(\.\.\/|[^-][^=]*=\.\.\/)/.test(word)))).toEqual([]);
  });

  it('the preview example reads images that a clone has', () => {
    const preview = commands.find((l) => l.trim().startsWith('trt-calib preview'));
    const data = /--data (\S+)/.exec(preview ?? '')?.[1];
    expect(data).toBe('test/fixtures/images');
    expect(existsSync(path.join(root, data!))).toBe(true);
  });
});
