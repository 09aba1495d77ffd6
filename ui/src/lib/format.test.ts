import { describe, expect, it } from "vitest";
import {
  exactBytes,
  formatAgo,
  formatBytes,
  formatCount,
  formatDuration,
  formatParameters,
  formatPercent,
  formatSpeed,
  formatTokenRate,
  toDate,
} from "./format";

describe("format", () => {
  it("sizes in decimal units with one decimal", () => {
    expect(formatBytes(76_300_000)).toBe("76.3 MB");
    expect(formatBytes(3_215_000_000)).toBe("3.2 GB");
    expect(formatBytes(999_999)).toBe("1.0 MB");
    expect(formatBytes(512_000)).toBe("512.0 KB");
    expect(formatBytes(1_000_000)).toBe("1.0 MB");
    expect(formatBytes(12)).toBe("12 B");
    expect(formatBytes(-1)).toBe("—");
    expect(exactBytes(1234567)).toBe("1,234,567 bytes");
    expect(formatSpeed(12_340_000)).toBe("12.3 MB/s");
  });

  it("durations as people say them", () => {
    expect(formatDuration(0.2)).toBe("1 s");
    expect(formatDuration(45)).toBe("45 s");
    expect(formatDuration(180)).toBe("3 min");
    expect(formatDuration(3 * 3600)).toBe("3 h");
    expect(formatDuration(4800)).toBe("1 h 20 min");
    expect(formatDuration(Infinity)).toBe("—");
  });

  it("counts and parameters", () => {
    expect(formatCount(950)).toBe("950");
    expect(formatCount(12_345)).toBe("12.3k");
    expect(formatCount(4_100_000)).toBe("4.1M");
    expect(formatParameters(135_000_000)).toBe("135M");
    expect(formatParameters(7_615_000_000)).toBe("7.6B");
    expect(formatParameters(1_000_000_000)).toBe("1B");
  });

  it("dates as how long ago", () => {
    const now = new Date("2025-06-15T12:00:00Z");
    expect(formatAgo(new Date("2025-06-15T08:00:00Z"), now)).toBe("today");
    expect(formatAgo(new Date("2025-06-14T08:00:00Z"), now)).toBe("yesterday");
    expect(formatAgo(new Date("2025-06-10T12:00:00Z"), now)).toBe("5 days ago");
    expect(formatAgo(new Date("2025-03-10T12:00:00Z"), now)).toBe("3 months ago");
    expect(formatAgo(new Date("2023-01-10T12:00:00Z"), now)).toBe("2 years ago");
    expect(toDate(1_750_000_000)?.toISOString()).toBe("2025-06-15T15:06:40.000Z");
    expect(toDate("not a date")).toBeNull();
    expect(toDate(null)).toBeNull();
  });

  it("generation speeds and shares as people read them", () => {
    expect(formatTokenRate(41.73)).toBe("42 tok/s");
    expect(formatTokenRate(4.24)).toBe("4.2 tok/s");
    expect(formatTokenRate(0)).toBe("0 tok/s");
    expect(formatTokenRate(Number.NaN)).toBe("0 tok/s");
    expect(formatPercent(0.634)).toBe("63%");
    expect(formatPercent(1)).toBe("100%");
    expect(formatPercent(0)).toBe("0%");
    expect(formatPercent(null)).toBe("—");
  });
});
