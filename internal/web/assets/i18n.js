// zapbus dashboard: languages and local formats. Every user-visible string
// lives in one catalog per language (i18n.pt-BR.json, i18n.en.json; a Go
// test keeps their keys identical). Markup names its strings with
// data-i18n="key" (text) and data-i18n-<attribute>="key" (placeholder,
// aria-label, alt, title); script calls I18N.t(key, params).
"use strict";

const I18N = (() => {
  const LANGS = ["pt-BR", "en"];
  const DEFAULT = "pt-BR";
  const LANG_KEY = "zapbus.lang";
  const catalogs = {};
  let lang = DEFAULT;
  const listeners = [];

  // choose: the remembered switch, else the first browser language we
  // speak, else Portuguese (the people who use zapbus are Brazilian).
  function choose() {
    let saved = "";
    try { saved = localStorage.getItem(LANG_KEY) || ""; } catch (e) { /* storage blocked */ }
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || [navigator.language || ""]) {
      const base = l.toLowerCase().split("-")[0];
      if (base === "pt") return "pt-BR";
      if (base === "en") return "en";
    }
    return DEFAULT;
  }

  // locale is the language used for Intl formats: the browser's own tag
  // when it is a variant of the chosen language (en-GB keeps its 24-hour
  // clock), else the chosen language.
  function locale() {
    const base = lang.split("-")[0];
    for (const l of navigator.languages || []) {
      if (l.toLowerCase().split("-")[0] === base && l.includes("-")) return l;
    }
    return lang;
  }

  function t(key, params) {
    let s = (catalogs[lang] || {})[key];
    if (s === undefined) s = (catalogs[DEFAULT] || {})[key];
    if (s === undefined) return key;
    if (params) s = s.replace(/\{(\w+)\}/g, (m, name) => (params[name] === undefined ? m : String(params[name])));
    return s;
  }

  // apply translates the markup under root.
  function apply(root) {
    const scope = root || document;
    for (const el of scope.querySelectorAll("*")) {
      for (const a of [...el.attributes]) {
        if (a.name === "data-i18n") el.textContent = t(a.value);
        else if (a.name.startsWith("data-i18n-")) el.setAttribute(a.name.slice("data-i18n-".length), t(a.value));
      }
    }
  }

  function setLang(l, remember) {
    if (!LANGS.includes(l)) return;
    lang = l;
    if (remember) {
      try { localStorage.setItem(LANG_KEY, l); } catch (e) { /* storage blocked */ }
    }
    document.documentElement.lang = l;
    apply(document);
    for (const fn of listeners) fn(l);
  }

  async function load(l) {
    const res = await fetch("/assets/i18n." + l + ".json", { cache: "no-cache" });
    if (!res.ok) throw new Error("catalog " + l + ": " + res.status);
    catalogs[l] = await res.json();
  }

  // ready loads both catalogs (they are small) so the switch is instant.
  const ready = Promise.all(LANGS.map(load)).then(() => setLang(choose(), false));

  // ---- formats -------------------------------------------------------------

  function number(n) {
    return new Intl.NumberFormat(locale()).format(n);
  }

  // bytes formats a file size with the largest fitting unit (1 kB = 1000 B,
  // as WhatsApp shows them).
  function bytes(n) {
    const units = ["byte", "kilobyte", "megabyte", "gigabyte"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return new Intl.NumberFormat(locale(), { style: "unit", unit: units[i], unitDisplay: "short", maximumFractionDigits: i === 0 ? 0 : 1 }).format(n);
  }

  // duration formats seconds as a clock, "0:04", "1:02:03".
  function duration(sec) {
    const n = Math.max(0, Math.round(Number(sec) || 0));
    const h = Math.floor(n / 3600), m = Math.floor((n % 3600) / 60), s = n % 60;
    const two = (x) => String(x).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  // daysBetween counts calendar days in the browser's time zone (rounding
  // absorbs a daylight-saving hour).
  function daysBetween(a, b) {
    const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate());
    return Math.round((midnight(b) - midnight(a)) / 864e5);
  }

  // when formats a timestamp relative to today in the browser's time zone:
  // "hoje 14:32", "ontem", "12/03" (short: conversation list) or
  // "ontem 14:32", "12/03 14:32" (long: messages, status).
  function when(iso, long) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const now = new Date();
    const loc = locale();
    const time = new Intl.DateTimeFormat(loc, { timeStyle: "short" }).format(d);
    const days = daysBetween(d, now);
    if (days === 0) return t("time.today", { time });
    if (days === 1) return long ? t("time.yesterdayAt", { time }) : t("time.yesterday");
    const opts = { day: "2-digit", month: "2-digit" };
    if (d.getFullYear() !== now.getFullYear()) opts.year = "numeric";
    const date = new Intl.DateTimeFormat(loc, opts).format(d);
    return long ? t("time.dateAt", { date, time }) : date;
  }

  // full is the unambiguous date and time, for tooltips.
  function full(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : new Intl.DateTimeFormat(locale(), { dateStyle: "full", timeStyle: "short" }).format(d);
  }

  // phone formats E.164 digits (without +, as the API gives them):
  // Brazilian numbers nationally, "(11) 91234-5678" and landlines
  // "(11) 3123-4567"; others internationally, "+1 415 555 0123".
  function phone(digits) {
    const p = String(digits || "");
    if (!/^\d+$/.test(p)) return p;
    if (p.startsWith("55") && (p.length === 12 || p.length === 13)) {
      const ddd = p.slice(2, 4);
      const n = p.slice(4);
      const cut = n.length - 4;
      return "(" + ddd + ") " + n.slice(0, cut) + "-" + n.slice(cut);
    }
    if (p.startsWith("1") && p.length === 11) {
      return "+1 " + p.slice(1, 4) + " " + p.slice(4, 7) + " " + p.slice(7);
    }
    if (p.startsWith("351") && p.length === 12) {
      return "+351 " + p.slice(3, 6) + " " + p.slice(6, 9) + " " + p.slice(9);
    }
    return "+" + p;
  }

  // error turns an API error into text for the user. The API's messages
  // stay English for programs; the dashboard speaks by code, and an unknown
  // code still shows itself so support can look it up.
  function error(e) {
    if (!e) return "";
    if (e.network) return t("error.network");
    const code = e.code || "";
    let text;
    if (code && (catalogs[lang] || {})["error." + code] !== undefined) {
      text = t("error." + code, { max: number(65536) });
    } else {
      text = t("error.generic", { code: code || String(e.status || "?") });
    }
    if (e.retryAfter > 0) text += " " + t("error.retryIn", { seconds: number(e.retryAfter) });
    return text;
  }

  return {
    LANGS, ready, t, apply, setLang,
    get lang() { return lang; },
    onChange(fn) { listeners.push(fn); },
    number, bytes, duration, when, full, phone, error,
  };
})();
