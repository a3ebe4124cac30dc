/**
 * Text values are produced by the walsender's output functions under its session settings; pinning
 * them makes the archived text canonical and independent of server or role defaults. A restore reads
 * values back under the same settings (recorded in docs/format.md).
 */
export const DECODING_SESSION_OPTIONS =
  '-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c client_encoding=UTF8 -c lc_monetary=C';
