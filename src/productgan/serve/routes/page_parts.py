"""The parts of the studio page that hold no data of the request: the detail view of one image
(with its steering: colourways, sliders and a strip, which steering.js fills from /directions.json),
the photo upload, and the sentence shown in its place when the server serves no run directory.

Every id here is one studio.js or steering.js looks for; the page (pages.py) puts them together.
"""

STEERING = """<section id="steering-section" aria-labelledby="steering-title"><h3 id="steering-title">Steer</h3>
<p class="hint" id="steering-status" aria-live="polite">Looking for this generator's sliders…</p>
<div id="steering" hidden>
<div class="steer">
<div class="steer-preview" id="steer-preview">
<img id="steer-image" class="pixel" data-error="steer-error" alt="the image as steered">
<div class="steer-about">
<p class="name"><code id="steer-name"></code></p>
<div class="actions">
<button type="button" class="secondary" id="steer-reset">Reset</button>
<button type="button" class="secondary" id="steer-copy">Copy name</button>
<a class="button secondary" id="steer-download" download>Download PNG</a></div>
<p id="steer-copy-status" class="hint" aria-live="polite"></p>
<p class="error" id="steer-error" role="alert"></p></div></div>
<fieldset class="sliders"><legend>Sliders, -2 to +2 (0: as made; arrow keys move them by 0.1)</legend>
<div class="slider-list" id="sliders"></div></fieldset>
</div>
<section class="colour" aria-labelledby="colour-title"><h4 id="colour-title">Colour</h4>
<p class="hint" id="colour-note"></p>
<div class="palette">
<div class="swatches" id="swatches" role="group" aria-labelledby="colour-title"></div>
<div class="field picker" id="picker"><label for="colour-pick">Any colour</label>
<input id="colour-pick" type="color" value="#1560bd"></div></div>
<p class="hint" id="colour-status" aria-live="polite"></p>
<p class="error" id="colour-error" role="alert"></p>
<div class="colourway" id="colourway" hidden>
<img id="colourway-image" class="pixel" data-error="colour-error" alt="">
<div><p id="colourway-text"></p>
<p class="chips" id="chips" aria-hidden="true"><span class="chip" id="chip-asked"></span> asked
<span class="chip" id="chip-reached"></span> reached</p>
<button type="button" class="secondary" id="colourway-open">Open this colourway</button></div></div>
</section>
<section aria-labelledby="strip-title"><h4 id="strip-title">A strip along one slider</h4>
<form id="strip-form" class="strip-form" novalidate>
<div class="field"><label for="strip-along">Slider</label><select id="strip-along"></select></div>
<div class="field submit"><button type="submit" class="primary" id="strip-go">Show -2 to +2</button></div>
</form>
<p class="error" id="strip-error" role="alert"></p>
<figure id="strip-result" hidden><img id="strip-image" class="pixel strip-image" data-error="strip-error" alt="">
<figcaption class="strip-scale" id="strip-caption"></figcaption></figure>
</section>
</div></section>
"""


DETAIL = """<dialog id="detail" aria-labelledby="detail-title">
<div class="detail-head"><h2 id="detail-title">Image</h2>
<button type="button" class="icon" id="close" aria-label="Close">&#x2715;</button></div>
<div class="detail-body"><div class="detail-main">
<img id="detail-image" class="pixel big" alt="">
<div>
<p class="name"><code id="detail-name"></code>
<button type="button" class="secondary" id="copy-name">Copy the name</button>
<span id="copy-status" class="hint" aria-live="polite"></span></p>
<p id="detail-category" class="hint"></p>
<div class="actions">
<a class="button secondary" id="download-native" download>Download PNG</a>
<a class="button secondary" id="download-large" download>Download enlarged</a></div>
<div class="more">
<div class="field spread"><label for="spread">Spread <output id="spread-value" for="spread">{spread}</output></label>
<input id="spread" type="range" min="0.01" max="1" step="0.01" value="{spread}">
<p class="hint">Near 0: nearly the same image; 1: an unrelated one.</p></div>
<button type="button" class="primary" id="more">More like this</button>
</div></div></div>
<section id="variants-section" hidden><h3>More like this</h3>
<p class="hint">Close variations: open one to vary it again, or choose it below to walk to it.</p>
<div class="strip" id="variants" aria-live="polite"></div>
<p class="error" id="variants-error" role="alert"></p></section>
{steering}<section id="neighbours-section" hidden><h3>Nearest training images</h3>
<p id="copy-flag"></p><div class="strip" id="neighbours"></div><p class="error" id="neighbours-error" role="alert"></p>
</section>
<section><h3>Walk to another image</h3>
<form id="walk" novalidate>
<fieldset class="choose"><legend>Image to walk to: click a variant or an image of the gallery</legend>
<div class="choices" id="walk-choices"></div>
<p class="hint" id="walk-chosen" aria-live="polite"></p>
<details id="walk-typed"><summary>or type its name</summary>
<div class="field"><label for="walk-to">Image's name</label>
<input id="walk-to" name="to" type="text" autocomplete="off" spellcheck="false"></div></details>
<p class="error" id="walk-to-error" role="alert"></p></fieldset>
<div class="field frames"><label for="frames">Frames</label>
<input id="frames" name="frames" type="number" inputmode="numeric" min="2" max="120" value="24">
<p class="error" id="frames-error" role="alert"></p></div>
<div class="field submit"><button type="submit" class="primary" id="walk-go">Walk</button></div>
</form>
<div id="walk-result" hidden><img id="walk-image" class="pixel walk" alt="the walk, playing">
<a class="button secondary" id="walk-download" download="walk.gif">Download the walk (GIF)</a></div>
</section>
</div></dialog>"""
UPLOAD = """<section class="card upload" aria-labelledby="upload-title">
<h2 id="upload-title">Start from a product photo</h2>
<p class="hint">The generator searches for the image of its own closest to your photo; from there, ask for
more like it or walk to another image. The photo stays in memory and is not stored.</p>
<form id="upload" novalidate>
<div class="field"><label for="photo">Photo</label>
<input id="photo" name="photo" type="file" accept="image/*" aria-describedby="expects">
<p class="expects" id="expects">{expects}</p>
<p class="error" id="photo-error" role="alert"></p></div>
<div class="field"><label for="effort">Effort</label>
<select id="effort" name="steps"><option value="100" selected>quick (100 steps)</option>
<option value="300">thorough (300 steps, three times as long)</option></select></div>
<div class="field submit"><button type="submit" class="primary" id="project">Find it</button></div>
</form>
<div id="projection" class="projection" hidden>
<figure><img id="target" class="pixel" alt="your photo, fitted">
<figcaption>your photo, as the generator sees it</figcaption></figure>
<figure><img id="reconstruction" class="pixel" alt="the generator's closest image">
<figcaption>the generator's closest image</figcaption></figure>
<div><p id="verdict" class="verdict"></p><p id="distance" class="hint"></p>
<button type="button" class="primary" id="open-projection">Open: more like this, walk</button></div>
</div>
</section>
"""
NO_RUN = """<p class="card hint">Projecting a photo and finding an image's nearest training images
need the run directory; this server serves an exported generator.</p>
"""


def detail_view(spread: float) -> str:
    """The detail view, its spread slider at ``spread`` (the variants' default)."""
    return DETAIL.replace("{spread}", f"{spread:g}").replace("{steering}", STEERING)
