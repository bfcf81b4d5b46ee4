//! What the self-contained HTML reports share: their style sheet and charts as data URIs.

use base64::Engine as _;
use maud::{Markup, html};

/// The reports' style sheet, inlined in each page.
pub(crate) const STYLE: &str = "
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 2rem auto; max-width: 1400px;
       color: #1d2330; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d5d9e0; padding-bottom: .3rem; }
.meta { color: #5b6475; }
.summary { display: flex; gap: 1rem; margin: 1rem 0; }
.tile { border-radius: 8px; padding: .7rem 1.1rem; background: #f2f4f8; min-width: 8rem; }
.tile b { display: block; font-size: 1.6rem; }
.tile.bad { background: #fde8e8; color: #8a1c1c; }
.tile.good { background: #e6f6ea; color: #1e5e2f; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .5rem 0; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e4e7ec; vertical-align: top; }
th { background: #f7f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { color: #1e7b34; font-weight: bold; }
.fail { color: #b42318; font-weight: bold; }
.detail { color: #5b6475; font-size: .82rem; }
img { max-width: 100%; border: 1px solid #e4e7ec; border-radius: 6px; margin: .5rem 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 1rem; }
";

/// A PNG chart as an `img` whose source is a data URI (no file beside the page).
pub(crate) fn image(alt: &str, png: &[u8]) -> Markup {
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    html! { img alt=(alt) src=(format!("data:image/png;base64,{data}")); }
}

/// `value` with at most 4 significant decimals, for messages.
pub(crate) fn round(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}
