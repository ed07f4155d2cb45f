package bench

import (
	"hash/fnv"
	"image/color"
	"strings"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// A model's look — colour, marker and line — is keyed by its name, never by its
// position in a run's list, so that a model is drawn the same in every plot of
// every run, whatever subset of models ran. Models of one family share a hue
// range, so that the eye groups them: event loops in blues and greens, threads
// and pools in reds and oranges, processes in purples, reference peers in grey
// (and dotted).

// Family names, in the order the report and the plots group them.
const (
	FamilyEventLoops = "event loops"
	FamilyThreads    = "threads and pools"
	FamilyProcesses  = "processes"
	FamilyReference  = "reference peers"
	FamilyOther      = "other models"
)

// Families lists the families in their display order.
var Families = []string{FamilyEventLoops, FamilyThreads, FamilyProcesses, FamilyOther, FamilyReference}

// familyLooks are each family's colours, markers and dashes: the i-th model of
// a family (its place in familyModels) takes the i-th of each.
type familyLook struct {
	colors []color.RGBA
	glyphs []draw.GlyphDrawer
	dashes [][]vg.Length
}

var (
	dashSolid  = []vg.Length{}
	dashLong   = []vg.Length{vg.Points(6), vg.Points(3)}
	dashShort  = []vg.Length{vg.Points(2), vg.Points(2)}
	dashDotted = []vg.Length{vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}
)

var familyLooks = map[string]familyLook{
	FamilyEventLoops: {
		colors: []color.RGBA{{31, 119, 180, 255}, {23, 170, 190, 255}, {44, 160, 44, 255}, {0, 90, 50, 255},
			{20, 40, 140, 255}, {120, 190, 60, 255}, {0, 128, 128, 255}, {90, 140, 230, 255}},
		glyphs: []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{},
			draw.CrossGlyph{}, draw.PlusGlyph{}, draw.BoxGlyph{}, draw.RingGlyph{}},
		dashes: [][]vg.Length{dashSolid, dashSolid, dashSolid, dashLong, dashLong, dashShort, dashLong, dashShort},
	},
	FamilyThreads: {
		colors: []color.RGBA{{214, 39, 40, 255}, {255, 127, 14, 255}, {180, 130, 0, 255}, {140, 60, 40, 255}},
		glyphs: []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}},
		dashes: [][]vg.Length{dashSolid, dashLong, dashSolid, dashShort},
	},
	FamilyProcesses: {
		colors: []color.RGBA{{148, 103, 189, 255}, {227, 90, 194, 255}, {90, 20, 120, 255}, {190, 150, 220, 255}},
		glyphs: []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}},
		dashes: [][]vg.Length{dashSolid, dashLong, dashSolid, dashShort},
	},
	FamilyOther: {
		colors: []color.RGBA{{188, 189, 34, 255}, {140, 86, 75, 255}, {0, 0, 0, 255}, {128, 128, 0, 255}},
		glyphs: []draw.GlyphDrawer{draw.BoxGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.PlusGlyph{}},
		dashes: [][]vg.Length{dashDotted, dashDotted, dashDotted, dashDotted},
	},
	FamilyReference: {
		colors: []color.RGBA{{70, 70, 70, 255}, {130, 130, 130, 255}, {40, 40, 40, 255}, {100, 100, 100, 255}},
		glyphs: []draw.GlyphDrawer{draw.BoxGlyph{}, draw.RingGlyph{}, draw.PyramidGlyph{}, draw.CrossGlyph{}},
		dashes: [][]vg.Length{peerDash, peerDash, peerDash, peerDash},
	},
}

// familyModels places every known model and peer in its family, in a fixed
// order: the place picks its colour and marker. A model not listed here (a new
// one, before it is added) falls in FamilyOther with a look from a hash of its
// name; a peer not listed takes a reference look the same way. A test checks
// that every registered model is listed.
var familyModels = map[string][]string{
	FamilyEventLoops: {"select", "poll", "epoll-lt", "epoll-et", "reactor", "multireactor", "uring", "uring-sqpoll"},
	FamilyThreads:    {"thread", "threadpool", "goroutine"},
	FamilyProcesses:  {"fork", "procpool", "prefork"},
	FamilyReference:  {"peer:cepoll", "peer:nginx", "peer:uring", "peer:libevent"},
}

// Look is how one model is drawn.
type Look struct {
	Family string
	Color  color.RGBA
	Glyph  draw.GlyphDrawer
	Dash   []vg.Length
}

// LookOf is the look of the model (or peer) name: the same in every figure and
// every run.
func LookOf(name string) Look {
	base := BaseModel(name)
	fam, i := FamilyOf(base), -1
	for j, m := range familyModels[fam] {
		if m == base {
			i = j
		}
	}
	fl := familyLooks[fam]
	if i < 0 {
		i = int(hashOf(base) % uint32(len(fl.colors)))
	}
	lk := Look{Family: fam, Color: fl.colors[i%len(fl.colors)], Glyph: fl.glyphs[i%len(fl.glyphs)], Dash: fl.dashes[i%len(fl.dashes)]}
	if base != name {
		// A variant (-set): its base model's colour, a marker and a line of
		// its own.
		v := int(hashOf(name))
		lk.Glyph, lk.Dash = allGlyphs[v%len(allGlyphs)], allDashes[v%len(allDashes)]
	}
	return lk
}

var (
	allGlyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{},
		draw.PlusGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}}
	allDashes = [][]vg.Length{dashSolid, dashLong, dashShort, dashDotted}
)

func hashOf(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// FamilyOf is the family of a model or peer name (a variant's is its base
// model's).
func FamilyOf(name string) string {
	name = BaseModel(name)
	for fam, ms := range familyModels {
		for _, m := range ms {
			if m == name {
				return fam
			}
		}
	}
	if strings.HasPrefix(name, PeerPrefix) {
		return FamilyReference
	}
	return FamilyOther
}

// byFamily splits models into their families, in the order of Families, each
// keeping the order models had; empty families are left out.
func byFamily(models []string) (fams []string, members [][]string) {
	for _, fam := range Families {
		var ms []string
		for _, m := range models {
			if FamilyOf(m) == fam {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			fams, members = append(fams, fam), append(members, ms)
		}
	}
	return fams, members
}
