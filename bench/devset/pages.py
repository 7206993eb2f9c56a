"""The page types of the development set. Each builder typesets one page on a Sheet, in reading order, and
returns it; bench.devset turns the sheet's record into ground truth and checks."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.devset.layout import Block, Flow, Frame, Sheet, Style, draw_table
from bench.devset.prose import Prose, WORDS

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def photo(rng: random.Random, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A made-up photograph: sky gradient, hills, a few buildings and a sun, with grain and a little blur."""
    w, h = size
    gen = np.random.default_rng(rng.randrange(2**32))
    top, bottom = np.array([rng.randint(90, 160), rng.randint(120, 190), rng.randint(180, 240)]), \
        np.array([rng.randint(200, 240), rng.randint(190, 230), rng.randint(160, 210)])
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t) * np.ones((h, w, 3))
    image = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    sx, sy, sr = rng.randint(60, w - 60), rng.randint(40, h // 3), rng.randint(20, 45)
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(250, 235, 180))
    for layer in range(3):
        base = h * (0.5 + 0.12 * layer)
        xs = np.linspace(0, w, 12)
        ys = base + gen.normal(0, 18, xs.size)
        shade = 40 + 45 * layer
        draw.polygon([(0, h)] + list(zip(xs.tolist(), ys.tolist())) + [(w, h)],
                     fill=(shade, shade + 30, shade + 10))
    for _ in range(rng.randint(3, 7)):
        bx, bw, bh = rng.randint(0, w - 60), rng.randint(30, 80), rng.randint(40, 160)
        g = rng.randint(50, 150)
        draw.rectangle((bx, h - bh - 30, bx + bw, h - 30), fill=(g, g - 10, g - 20))
        for wy in range(h - bh - 20, h - 40, 18):
            draw.rectangle((bx + 6, wy, bx + 14, wy + 8), fill=(230, 220, 150))
    pixels = np.asarray(image, dtype=np.float32) + gen.normal(0, 9, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def _columns(x: float, total: float, gutter: float, ratios: list[float]) -> list[tuple[float, float]]:
    usable = total - gutter * (len(ratios) - 1)
    out, cx = [], x
    for r in ratios:
        w = usable * r / sum(ratios)
        out.append((cx, w))
        cx += w + gutter
    return out


def magazine(seed: int) -> Sheet:
    rng = random.Random(seed)
    prose = Prose(rng)
    s = Sheet()
    left, right, W = 42.0, 570.0, 528.0
    name = rng.choice(["The Harbour Review", "Northern Quarterly", "The Lantern", "Field & Shore"])
    issue = f"{rng.choice(MONTHS)} {rng.randint(2019, 2024)}"
    folio = str(rng.randint(12, 96))
    s.running_string("header", name.upper(), left, 30, "sans_bold", 7.5)
    s.running_string("header", issue.upper(), right, 30, "sans", 7.5, "right")
    s.rule(left, 35, right, 35, 0.5)
    y = s.lines(prose.headline(), left, 48, W, Style("serif_bold", 26, 29, "left", hyphenate=False), "title")
    y = s.lines(prose.sentence() + " " + prose.sentence(), left, y + 4, W * 0.8,
                Style("serif_italic", 11.5, 14, "left", hyphenate=False), "text")
    y = s.lines(f"By {rng.choice(WORDS['names'])}", left, y + 4, W, Style("sans_bold", 8, 10, "left"), "meta")
    s.rule(left, y + 4, right, y + 4, 0.5)
    body_top, body_bottom = y + 14, 792 - 52
    ratios = rng.choice([[1.25, 1.0, 0.8], [0.85, 1.15, 1.0], [1.0, 0.8, 1.2], [1.1, 1.1, 0.8]])
    cols = _columns(left, W, 14, ratios)
    # the photo straddles columns 2 and 3: lines beside it are shortened in both; its caption sits below it
    (c2x, c2w), (c3x, c3w) = cols[1], cols[2]
    px0, px1 = c2x + c2w * rng.uniform(0.45, 0.55), c3x + c3w * rng.uniform(0.35, 0.45)
    ph = (px1 - px0) * 0.72
    py0 = body_top + (body_bottom - body_top) * rng.uniform(0.22, 0.38)
    s.image(photo(rng), (px0, py0, px1, py0 + ph))
    caption_text = prose.sentence()
    s.chain = "caption"
    cap_y = s.lines(caption_text, px0, py0 + ph + 3, px1 - px0, Style("serif_italic", 7.5, 9, "left",
                                                                     hyphenate=False), "caption")
    caption_block = s.blocks.pop()
    # the pull quote takes the full width of column 1, lower down
    c1x, c1w = cols[0]
    qy0 = body_top + (body_bottom - body_top) * rng.uniform(0.55, 0.68)
    s.rule(c1x, qy0, c1x + c1w, qy0, 1.2)
    quote_style = Style("serif_italic", 13, 16, "left", hyphenate=False)
    s.chain = "quote"
    qy1 = s.lines(prose.sentence(), c1x, qy0 + 6, c1w, quote_style, "quote") + 4
    quote_block = s.blocks.pop()
    s.rule(c1x, qy1, c1x + c1w, qy1, 1.2)
    s.chain = ""
    frames = [Frame(x, body_top, w, body_bottom) for x, w in cols]
    flow = Flow(s, frames, obstacles=[(px0, py0, px1, cap_y + 2), (c1x, qy0, c1x + c1w, qy1)], gap=9)
    body = Style("serif", 9.2, 11.2, "justify", indent=10)
    sub = Style("sans_bold", 9, 12, "left", hyphenate=False, space_after=2)
    title = s.blocks[0].text
    flow.paragraph(prose.paragraph((4, 6)), Style("serif", 9.2, 11.2, "justify"))
    count = 0
    while not flow.full:
        count += 1
        if count % 4 == 0:
            flow.space(6)
            flow.heading(prose.headline((2, 4)), sub)
        flow.paragraph(prose.paragraph((3, 6)), body)
    quote_block.floating = caption_block.floating = True
    s.blocks.extend([quote_block, caption_block])
    s.running_string("page_number", folio, left if int(folio) % 2 == 0 else right, 770, "sans_bold", 8,
                     "left" if int(folio) % 2 == 0 else "right")
    s.order.append((title, 0, "title before the body"))
    return s


def newspaper(seed: int) -> Sheet:
    rng = random.Random(seed)
    prose = Prose(rng)
    s = Sheet()
    left, W = 36.0, 540.0
    paper = rng.choice(["The Northern Courier", "Westbrook Evening Post", "The Valley Herald"])
    date = f"{rng.choice(['Monday', 'Tuesday', 'Thursday', 'Friday'])}, {rng.choice(MONTHS)} {rng.randint(2, 28)}, " \
           f"{rng.randint(2015, 2024)}"
    section = f"{rng.choice('ABC')}{rng.randint(2, 19)}"
    s.running_string("header", paper.upper(), left, 28, "serif_bold", 8)
    s.running_string("header", date, left + W / 2, 28, "serif", 8, "center")
    s.running_string("page_number", section, left + W, 28, "serif_bold", 9, "right")
    s.rule(left, 33, left + W, 33, 1.0)
    cols = _columns(left, W, 10, [1] * 5)
    top, bottom = 42.0, 792 - 36
    split = top + (bottom - top) * rng.uniform(0.45, 0.58)
    layouts = [[(0, 3, 0), (3, 5, 0), (0, 2, 1), (2, 5, 1)], [(0, 2, 0), (2, 5, 0), (0, 3, 1), (3, 5, 1)]]
    rules = rng.random() < 0.6
    for a, b, row in rng.choice(layouts):
        y0, y1 = (top, split - 6) if row == 0 else (split + 6, bottom)
        x0, x1 = cols[a][0], cols[b - 1][0] + cols[b - 1][1]
        size = rng.choice([15, 17, 19]) if b - a >= 3 else rng.choice([13, 15])
        headline = prose.headline((5, 9))
        y = s.lines(headline, x0, y0, x1 - x0, Style("serif_bold", size, size * 1.12, "left", hyphenate=False),
                    "title")
        if rng.random() < 0.5:
            y = s.lines(prose.sentence(), x0, y + 2, x1 - x0, Style("serif_italic", 9.5, 11.5, "left",
                                                                     hyphenate=False), "text")
        y = s.lines(f"By {rng.choice(WORDS['names'])}", x0, y + 2, x1 - x0, Style("sans_bold", 7, 9, "left"),
                    "meta")
        frames = [Frame(cols[c][0], y + 4, cols[c][1], y1) for c in range(a, b)]
        if rules:
            for c in range(a + 1, b):
                s.rule(cols[c][0] - 5, y + 4, cols[c][0] - 5, y1, 0.3, 0.3)
        flow = Flow(s, frames)
        s.order.append((headline, len(s.frames) - len(frames), "headline before its article"))
        first = True
        while not flow.full:
            flow.paragraph(prose.paragraph((2, 4)), Style("serif", 8.6, 10.2, "justify", indent=0 if first else 8))
            first = False
        if b < 5:
            s.rule(x1 + 5, y0, x1 + 5, y1, 0.5)
    s.rule(left, split, left + W, split, 0.8)
    return s


def paper(seed: int) -> Sheet:
    rng = random.Random(seed)
    prose = Prose(rng, "science")
    s = Sheet()
    left, W = 54.0, 504.0
    authors = rng.sample(WORDS["names"], 3)
    short = f"{rng.choice(['Oxygen', 'Heat', 'Sediment', 'Ice'])} {rng.choice(['Budgets', 'Trends', 'Fluxes'])} " \
            f"in {rng.choice(['Shallow', 'Boreal', 'Upland', 'Coastal'])} Lakes"
    surnames = [a.split()[-1] for a in authors]
    journal = rng.choice(["Journal of Inland Waters", "Limnology Letters", "Freshwater Systems Review"])
    first = rng.randint(101, 880)
    s.running_string("header", f"{journal} {rng.randint(12, 58)} ({rng.randint(2016, 2024)}) {first}-{first + 14}",
                     left, 36, "serif_italic", 8)
    s.running_string("header", f"{surnames[0]}, {surnames[1]} and {surnames[2]}", left + W, 36, "serif_italic", 8,
                     "right")
    s.rule(left, 40, left + W, 40, 0.4)
    y = s.lines(f"{short}: {prose.headline((3, 5))}", left, 54, W,
                Style("serif_bold", 15, 18, "center", hyphenate=False), "title")
    y = s.lines(", ".join(authors), left, y + 4, W, Style("serif", 10, 12, "center", hyphenate=False), "meta")
    y = s.lines(f"Department of {rng.choice(['Limnology', 'Earth Sciences', 'Environmental Physics'])}, "
                f"University of {rng.choice(['Westbrook', 'Lindenfield', 'Port Elsworth'])}", left, y + 1, W,
                Style("serif_italic", 8.5, 10, "center", hyphenate=False), "meta")
    y = s.lines("Abstract", left, y + 8, W, Style("serif_bold", 9.5, 11, "center"), "heading")
    y = s.lines(prose.paragraph((4, 5)), left + 36, y + 2, W - 72, Style("serif", 9, 10.8, "justify"), "text")
    cols = _columns(left, W, 18, [1, 1])
    frames = [Frame(x, y + 12, w, 792 - 52) for x, w in cols]
    flow = Flow(s, frames)
    body = Style("serif", 9.5, 11.4, "justify", indent=10)
    first = Style("serif", 9.5, 11.4, "justify")
    head = Style("serif_bold", 10, 13, "left", hyphenate=False, space_after=2)
    sections = ["Introduction", "Study sites and methods", "Results", "Discussion", "Limitations",
                "Conclusions", "Data availability"]
    equation = rng.choice(["C(t) = C0 exp(-k t) + b t", "F = k (Cs - Cw) / z", "dT/dz = Q / (rho c K)",
                           "R = 1 - SSE / SST"])
    grid = _results_table(rng)
    caption = f"Table 1: {prose.sentence()}"
    for number, section in enumerate(sections, 1):
        if flow.full:
            break
        flow.space(5)
        flow.heading(f"{number} {section}", head)
        flow.paragraph(prose.paragraph((3, 5)), first)
        if number == 2:
            flow.line(f"{equation}        (1)", Style("serif_italic", 9.5, 16, "center"))
            flow.paragraph(prose.paragraph((2, 4)), first)
        if number == 3:
            flow.space(4)
            if not flow.table(grid, caption, Style("serif", 8.5, 10, "left", hyphenate=False),
                              Style("serif", 8.5, 10)):
                continue
            flow.space(4)
        flow.paragraph(prose.paragraph((3, 5)), body)
    s.running_string("page_number", str(rng.randint(2, 19)), left + W / 2, 770, "serif", 9, "center")
    return s


def _results_table(rng: random.Random) -> list[list[str]]:
    header = ["Site", "Depth (m)", "Mean T (C)", "Trend (C/yr)", "Cores"]
    sites = rng.sample(["Kestrel Bay", "Aldmoor", "Northgate", "Carrick Point", "Hollins Green", "Lindenfield",
                        "Saltmarsh", "Westbrook"], rng.randint(4, 6))
    rows, seen = [header], set()
    for site in sites:
        while True:
            cells = [f"{rng.uniform(1.5, 38):.1f}", f"{rng.uniform(3, 19):.2f}", f"{rng.uniform(0.01, 0.09):.3f}",
                     str(rng.randint(5, 60))]
            if not seen & set(cells):
                break
        seen.update(cells)
        rows.append([site, *cells])
    return rows


def invoice(seed: int) -> Sheet:
    rng = random.Random(seed)
    s = Sheet()
    left, W = 54.0, 504.0
    right = left + W
    company = rng.choice(["Aldmoor Marine Supplies Ltd", "Kestrel Print & Design", "Northgate Timber Co.",
                          "Carrick Point Electrical"])
    street = f"{rng.randint(2, 240)} {rng.choice(['Quay Street', 'Mill Lane', 'Harbour Road', 'Station Parade'])}"
    town = f"{rng.choice(['Port Elsworth', 'Westbrook', 'Lindenfield'])} {rng.choice(['PE4', 'WB12', 'LD7'])} " \
           f"{rng.randint(1, 9)}{rng.choice('ABDHJ')}{rng.choice('LNQRT')}"
    s.chain = "sender"
    y = s.lines(company, left, 50, 300, Style("sans_bold", 16, 19, "left", hyphenate=False), "title")
    for line in (street, town, f"Tel. 0{rng.randint(1200, 1999)} {rng.randint(100000, 999999)}",
                 f"accounts@{company.split()[0].lower()}.example"):
        y = s.lines(line, left, y + 2, 300, Style("sans", 8.5, 11, "left", hyphenate=False), "meta")
    number = f"INV-{rng.randint(2019, 2024)}-{rng.randint(100, 9999):04d}"
    day, month = rng.randint(1, 27), rng.randrange(11)
    meta = [f"Invoice No. {number}", f"Date: {day} {MONTHS[month]} {rng.randint(2019, 2024)}",
            f"Due: {day} {MONTHS[month + 1]}", f"PO Number: {rng.randint(10, 99)}-{rng.randint(10000, 99999)}"]
    s.chain = "invoice"
    s.lines("INVOICE", right - 200, 50, 200, Style("sans_bold", 22, 26, "right", hyphenate=False), "title")
    y = 80.0
    for line in meta:
        y = s.lines(line, right - 200, y, 200, Style("sans", 9, 12, "right", hyphenate=False), "meta")
    y = max(y, 150) + 16
    s.rule(left, y - 6, right, y - 6, 0.5)
    names = rng.sample(WORDS["names"], 2)
    places = rng.sample(["Kestrel Bay", "Northgate", "Hollins Green", "Carrick Point", "Westbrook"], 2)
    for x, label, person, place in ((left, "Bill To", names[0], places[0]),
                                    (left + W / 2, "Ship To", names[1], places[1])):
        s.chain = label
        yy = s.lines(label, x, y, 200, Style("sans_bold", 9, 12, "left"), "heading")
        for line in (person, f"{rng.randint(1, 90)} {rng.choice(['Elm Row', 'Pier Road', 'North Street'])}",
                     f"{place} {rng.choice(['KB3', 'NG1', 'HG9'])} {rng.randint(1, 9)}{rng.choice('RSTW')}"):
            yy = s.lines(line, x, yy, 200, Style("sans", 9, 11.5, "left", hyphenate=False), "meta")
    y += 62
    items = rng.sample(["Marine plywood sheet 18 mm", "Stainless cleat 150 mm", "Mooring rope 12 mm (per m)",
                        "Anti-fouling paint 2.5 L", "Bilge pump 12 V", "LED navigation light set",
                        "Fender, cylindrical 60 cm", "Deck screws A4 (box of 200)", "Epoxy resin kit 1 kg",
                        "Safety harness, adjustable", "Chart plotter mount", "Battery isolator switch"],
                       rng.randint(5, 9))
    grid = [["Qty", "Description", "Unit Price", "Amount"]]
    subtotal = 0.0
    for item in items:
        qty, price = rng.randint(1, 24), rng.uniform(3, 420)
        amount = round(qty * round(price, 2), 2)
        subtotal += amount
        grid.append([str(qty), item, f"{price:,.2f}", f"{amount:,.2f}"])
    s.chain = "items"
    y = draw_table(s, grid, left, y, W, Style("sans", 9, 11.5), rules="grid") + 12
    s.chain = "totals"
    tax_rate = rng.choice([5.0, 8.25, 10.0, 20.0])
    tax = round(subtotal * tax_rate / 100, 2)
    shipping = rng.choice([0.0, 12.5, 24.0, 38.75])
    totals = [("Subtotal", subtotal), (f"Tax ({tax_rate:g}%)", tax), ("Shipping", shipping),
              ("Total Due", subtotal + tax + shipping)]
    for label, value in totals:
        bold = "sans_bold" if label == "Total Due" else "sans"
        s.string(label, right - 180, y + 9, bold, 9.5)
        s.string(f"{value:,.2f}", right - 4, y + 9, bold, 9.5, "right")
        s.blocks.append(Block("meta", f"{label} {value:,.2f}"))
        y += 14
    prose = Prose(rng, "economy")
    s.chain = "notes"
    y = s.lines("Notes", left, y + 16, W, Style("sans_bold", 9, 12, "left"), "heading")
    s.lines(f"Payment is due within thirty days of the invoice date. {prose.sentence()}", left, y, W * 0.75,
            Style("sans", 8.5, 11, "left", hyphenate=False), "text")
    s.rule(left, 752, right, 752, 0.4)
    s.running_string("footer", f"{company} · Registered in England No. {rng.randint(1000000, 9999999)} · "
                     f"VAT GB {rng.randint(100, 999)} {rng.randint(1000, 9999)} {rng.randint(10, 99)}", left, 764,
                     "sans", 7)
    s.running_string("footer", "Page 1 of 1", right, 764, "sans", 7, "right")
    return s


def letter(seed: int) -> Sheet:
    rng = random.Random(seed)
    prose = Prose(rng, rng.choice(["harbour", "arts"]))
    s = Sheet()
    left, W = 72.0, 468.0
    org = rng.choice(["Kestrel Bay Harbour Trust", "Lindenfield Arts Council", "Westbrook Civic Society"])
    y = s.lines(org, left, 48, W, Style("serif_bold", 18, 21, "left", hyphenate=False), "title")
    y = s.lines(f"{rng.randint(2, 80)} {rng.choice(['Quay Street', 'Chapel Row', 'Market Hill'])}, "
                f"{rng.choice(['Kestrel Bay', 'Lindenfield', 'Westbrook'])} · Tel. 0{rng.randint(1200, 1999)} "
                f"{rng.randint(100000, 999999)}", left, y + 2, W, Style("sans", 8, 10, "left", hyphenate=False),
                "meta")
    s.rule(left, y + 4, left + W, y + 4, 0.8)
    y = s.lines(f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(2018, 2024)}", left, y + 26, W,
                Style("serif", 10.5, 13, "left"), "meta")
    recipient = rng.choice(WORDS["names"])
    for line in (recipient, rng.choice(["Director of Planning", "Head of Collections", "Chair of Governors"]),
                 rng.choice(["Northgate District Council", "The Aldmoor Foundation", "Port Elsworth Museum"]),
                 f"{rng.randint(1, 99)} {rng.choice(['High Street', 'Bridge Road', 'Castle Walk'])}",
                 f"{rng.choice(['Northgate', 'Aldmoor', 'Port Elsworth'])} {rng.choice(['NG', 'AL', 'PE'])}"
                 f"{rng.randint(1, 19)} {rng.randint(1, 9)}{rng.choice('ABDEF')}{rng.choice('NPQRS')}"):
        y = s.lines(line, left, y + (14 if line == recipient else 0), W, Style("serif", 10.5, 13, "left"), "meta")
    y = s.lines(f"Re: {prose.headline((3, 6))}", left, y + 16, W, Style("serif_bold", 10.5, 13, "left",
                                                                       hyphenate=False), "heading")
    title = rng.choice(["Dear Ms.", "Dear Dr.", "Dear Mr."])
    y = s.lines(f"{title} {recipient.split()[-1]},", left, y + 12, W, Style("serif", 10.5, 13, "left"), "meta")
    flow = Flow(s, [Frame(left, y + 8, W, 640)])
    body = Style("serif", 10.5, 13.2, rng.choice(["justify", "left"]), space_after=7,
                 hyphenate=rng.random() < 0.5)
    for _ in range(rng.randint(3, 5)):
        if flow.room() < 60:
            break
        flow.paragraph(prose.paragraph((2, 4)), body)
    y = s.lines(rng.choice(["Yours sincerely,", "With best regards,", "Yours faithfully,"]), left, flow.y + 8, W,
                Style("serif", 10.5, 13, "left"), "meta")
    _signature(s, rng, left + 4, y + 6)
    signer = rng.choice([n for n in WORDS["names"] if n != recipient])
    y = s.lines(signer, left, y + 44, W, Style("serif", 10.5, 13, "left"), "meta")
    s.lines(rng.choice(["Secretary", "Programme Director", "Chair of Trustees"]), left, y, W,
            Style("serif_italic", 10, 12.5, "left"), "meta")
    s.rule(left, 748, left + W, 748, 0.4)
    s.running_string("footer", f"{org} · Registered charity no. {rng.randint(1000000, 1199999)} · "
                     f"www.{org.split()[0].lower()}{org.split()[1].lower()}.org.uk", left + W / 2, 760, "sans", 7.5,
                     "center")
    return s


def _signature(s: Sheet, rng: random.Random, x: float, y: float) -> None:
    c = s.canvas
    c.setLineWidth(1.1)
    path = c.beginPath()
    px, py = x, s.height - y - 20
    path.moveTo(px, py)
    for _ in range(rng.randint(4, 7)):
        dx = rng.uniform(12, 30)
        path.curveTo(px + dx * 0.3, py + rng.uniform(8, 22), px + dx * 0.7, py - rng.uniform(8, 22), px + dx,
                     py + rng.uniform(-4, 4))
        px += dx
    c.drawPath(path, stroke=1, fill=0)


BUILDERS = {"magazine": magazine, "newspaper": newspaper, "paper": paper, "invoice": invoice, "letter": letter}
