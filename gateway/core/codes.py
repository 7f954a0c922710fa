"""Code lists and value formats of the v1 message bodies (SPEC §5).

Every closed list is a ``Literal`` so that msgspec rejects a value outside it while decoding and the
exported JSON Schema carries it as an ``enum``. Lists the SPEC spells out are copied exactly; where the
SPEC names a field without its list (or ends a list with "..."), the list is the one of the standard
cited in ``docs/messages.md`` (NCIC, OpenFMC, IBIN, Interpol iARMS).

``error.code`` uses :class:`gateway.core.errors.Code` (SPEC §9) directly.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from iso3166 import countries_by_alpha2

# --- value formats (regular expressions; msgspec applies them with ``re.search``, hence the anchors) ---

# ISO 3166-1 alpha-2, upper case (SPEC §1): the shape; :func:`is_country` says whether the code is assigned.
COUNTRY_PATTERN = r"^[A-Z]{2}$"


def is_country(code: str) -> bool:
    """``code`` is an ISO 3166-1 alpha-2 code in use (officially assigned, and XK, Kosovo, as the EU and
    Interpol use it), from the maintained ``iso3166`` package (pure data, no I/O): not ZZ, QQ, EU or UK."""
    return code in countries_by_alpha2


# Node id (SPEC §1): the one definition (manifests, configs, certificates, bodies).
NODE_ID_PATTERN = r"^[a-z][a-z0-9-]{1,31}$"
NODE_ID = re.compile(NODE_ID_PATTERN)
# Message id: a lower-case UUIDv7 string (SPEC §1, RFC 9562).
MESSAGE_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
# Unpadded base64url of a 32-byte SHA-256 digest: 43 characters, the last one carrying 2 zero bits
# (so that exactly one text encodes each digest).
SHA256_B64URL_PATTERN = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"
# EU firearms directive (EU) 2021/555 Annex I category: A, B or C with an optional sub-point (``A6``).
EU_CATEGORY_PATTERN = r"^[ABC](?:[1-9][0-9]?)?$"
# A deliberately loose e-mail shape: something@something, no whitespace.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"

# --- the envelope's protective marking (SPEC §3): the one definition of each list ---

# Handling codes (SPEC §3, the reference's definitions): H0 none ... H3 restricted, with restrictions.
HandlingCode = Literal["H0", "H1", "H2", "H3"]
HANDLING_CODES: tuple[str, ...] = get_args(HandlingCode)
# EU classification levels, lowest first (the order ``max_classification`` compares by).
Classification = Literal["UNCLASSIFIED", "BASIC_PROTECTION_LEVEL", "RESTREINT_UE", "CONFIDENTIEL_UE"]
CLASSIFICATIONS: tuple[str, ...] = get_args(Classification)
CLASSIFICATION_ORDER: dict[str, int] = {c: i for i, c in enumerate(CLASSIFICATIONS)}
DEFAULT_CLASSIFICATION: Classification = "BASIC_PROTECTION_LEVEL"
# Purposes of processing of the Law Enforcement Directive (EU) 2016/680, Art. 1(1).
Purpose = Literal[
    "PREVENTION",
    "INVESTIGATION",
    "DETECTION",
    "PROSECUTION",
    "EXECUTION_OF_PENALTIES",
    "SAFEGUARDING_PUBLIC_SECURITY",
]
PURPOSES: tuple[str, ...] = get_args(Purpose)
DEFAULT_PURPOSE: Purpose = "INVESTIGATION"

# --- shared Firearm object ---

# NCIC gun type, first character (NCIC GTYP / NIEM ncic:GTYPCodeType): A cannon, B submachine gun or
# machine pistol, C rifle-shotgun combination, D disguised gun, E electric shock gun, F ammunition,
# G grenade, H bomb, I mine, J missile, K rocket, M machine gun, O mortar, P pistol, Q shotgun pistol,
# R rifle, S shotgun, V silencer, Z all others (describe in ``free_text``).
NcicGunType = Literal[
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "M", "O", "P", "Q", "R", "S", "V", "Z"
]
# NCIC gun type, second character (NCIC GTYP2): A automatic, B bolt action, C carbine, D derringer,
# E double barrel side by side, F flare, G gas or air, H flintlock, I semi-automatic, J jet-propelled,
# K blank, L lever action, N launcher, O over and under, P pump action, R revolver, S single shot,
# T recoilless, U percussion, V tear gas, W three barrels, X four or more barrels.
# fmt: off
NcicGunTypeDetail = Literal[
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "N", "O", "P", "R", "S", "T", "U", "V", "W", "X"
]
# fmt: on
# Code systems for ``make_codes[].system``.
MakeCodeSystem = Literal["NCIC_MAK", "IFRT", "NATIONAL"]
# The essential components of Directive (EU) 2021/555 Art 1(1)(2) (barrel, frame, receiver - upper and
# lower where applicable -, slide, cylinder, bolt or breech block): where a firearm is marked
# (``marking_location``, which may also be ``OTHER``) and which component carries which marking.
EssentialComponent = Literal[
    "FRAME", "RECEIVER", "UPPER_RECEIVER", "LOWER_RECEIVER", "SLIDE", "BARREL", "CYLINDER", "BOLT", "BREECH_BLOCK"
]
MarkingLocation = Literal[
    "FRAME", "RECEIVER", "UPPER_RECEIVER", "LOWER_RECEIVER", "SLIDE", "BARREL", "CYLINDER", "BOLT", "BREECH_BLOCK",
    "OTHER",
]
# Units of ``barrel_length`` (NIEM 6 j:FirearmBarrelLengthMeasure is an nc:LengthMeasureType).
LengthUnit = Literal["mm", "cm", "in"]
MM_PER_UNIT: dict[str, float] = {"mm": 1.0, "cm": 10.0, "in": 25.4}

# --- trace.request / trace.response ---

# ATF F 3312.1 also refers obliterated-serial and suspect guns (OMB 1140-0043 supporting statement).
RequestKind = Literal["TRACE", "OBLITERATED_SERIAL_REFERRAL", "SUSPECT_GUN_REFERRAL"]
# ATF F 3312.1 item 1b "Priority: Routine / Urgent (Justification required)".
Priority = Literal["ROUTINE", "URGENT"]
# ``crime_code.system``: NCIC offence codes (ATF F 3312.1 item 2a "NCIC Crime Code") or a national list.
CrimeCodeSystem = Literal["NCIC", "NATIONAL"]
# Interpol's five criteria for "illicit" (iARMS).
IllicitBasis = Literal[
    "ILLICIT_UNDER_NATIONAL_LAW",
    "UN_EMBARGO_VIOLATION",
    "NOT_MARKED_PER_ITI",
    "UNLICENSED_MANUFACTURE",
    "UNLICENSED_TRANSFER",
]
RequestedInfo = Literal[
    "MANUFACTURE_RECORD",
    "EXPORT_RECORD",
    "IMPORT_RECORD",
    "DISTRIBUTION_CHAIN",
    "FIRST_RETAIL_PURCHASER",
    "LOSS_OR_THEFT_REPORT",
]
TraceStatus = Literal["COMPLETED", "PARTIAL", "NOT_TRACEABLE", "DELAYED", "RESTRICTED", "REFUSED"]
CustodyEventKind = Literal[
    "MANUFACTURED",
    "EXPORTED",
    "IMPORTED",
    "TRANSFERRED_TO_DEALER",
    "RETAIL_SALE",
    "PRIVATE_TRANSFER",
    "STATE_TO_CIVILIAN_TRANSFER",
    "CONVERTED",
    "REPORTED_LOST",
    "REPORTED_STOLEN",
    "DEACTIVATED",
    "DESTROYED",
]

# --- firearm.status.query / firearm.status.answer ---

StatusContext = Literal["RECOVERY", "BORDER_OR_CUSTOMS_CHECK", "REGISTRATION", "TRACE_PRECHECK"]
StatusResult = Literal["NO_HIT", "HIT", "MULTIPLE_HITS"]
# iARMS statuses, then the NCIC Gun File's entry types not already among them (felony gun, pawned).
RecordStatus = Literal[
    "LOST", "STOLEN", "TRAFFICKED", "SMUGGLED", "SEIZED_FOR_TRACE", "RECOVERED", "FELONY", "PAWNED"
]
MatchQuality = Literal["EXACT", "SERIAL_ONLY", "PARTIAL"]

# --- ballistic.submission / ballistic.hit ---

ExhibitKind = Literal["CARTRIDGE_CASE", "BULLET"]
ExhibitOrigin = Literal["CRIME_SCENE_EVIDENCE", "TEST_FIRE"]
# OpenFMC regions of interest, verbatim: cartridge-case ROIs, then bullet ROIs (``Other`` fits both).
CARTRIDGE_CASE_REGIONS: tuple[str, ...] = (
    "ApertureShear",
    "BreechFace",
    "CaseBodyMark",
    "EjectorMark",
    "ExtractorMark",
    "FiringPinDrag",
    "FiringPinImpression",
)
BULLET_REGIONS: tuple[str, ...] = ("GEA", "LEA", "PartialStrip", "Strip")
TopographyRegion = Literal[
    "ApertureShear",
    "BreechFace",
    "CaseBodyMark",
    "EjectorMark",
    "ExtractorMark",
    "FiringPinDrag",
    "FiringPinImpression",
    "GEA",
    "LEA",
    "PartialStrip",
    "Strip",
    "Other",
]
# OpenFMC cartridge-case and bullet class characteristics, verbatim.
FiringPinType = Literal["Centerfire", "Rimfire"]
FiringPinClass = Literal["Circular", "Elliptical", "Hemispherical", "Rectangular", "Other"]
FiringPinAperture = Literal["Circular", "Rectangular/Square", "Teardrop", "Other"]
BreechFaceClass = Literal["Arched", "Circular", "Crosshatch", "Granular", "Parallel", "Smooth", "Other"]
PrimerMaterial = Literal["Brass", "Copper", "Nickel", "Steel", "Other"]
CaseMaterial = Literal["Aluminum", "Brass", "Nickel", "Steel", "Other"]
RiflingType = Literal["Conventional", "Polygonal", "Unrifled"]
Twist = Literal["Left", "Right"]
BulletSurfaceMaterial = Literal["Aluminum", "Brass", "Copper", "Lead", "Nickel", "Polymer", "Steel", "Other"]

HitStatus = Literal["CANDIDATE", "LEAD", "CONFIRMED_HIT", "EXCLUDED", "INCONCLUSIVE"]
ConfirmationMethod = Literal["COMPARISON_MICROSCOPE", "VIRTUAL_3D", "OTHER"]
NextStep = Literal["REQUEST_CASTS", "REQUEST_PHYSICAL_EVIDENCE", "INITIATE_TRACE", "INFO_ONLY"]

# --- licence.verify.query / licence.verify.answer ---

LicenceContext = Literal["CUSTOMS_CHECK", "TRACE_FOLLOW_UP", "EUC_VERIFICATION", "DELIVERY_VERIFICATION"]
LicenceStatus = Literal["VALID", "EXPIRED", "REVOKED", "SUSPENDED", "NOT_FOUND", "NOT_DISCLOSABLE"]
# Answers that must not carry licence details.
LICENCE_UNDISCLOSED: frozenset[str] = frozenset({"NOT_FOUND", "NOT_DISCLOSABLE"})

# --- Europol evaluation codes (Regulation (EU) 2016/794 Art 29), for content that is intelligence ---

# Source reliability: A no doubt / reliable in all instances, B reliable in most instances, C unreliable
# in most instances, X cannot be assessed.
SourceReliability = Literal["A", "B", "C", "X"]
# Information accuracy: 1 not in doubt, 2 known personally to the source but not to the official passing
# it on, 3 not known personally to the source but corroborated, 4 not known personally and not corroborated.
InformationAccuracy = Literal[1, 2, 3, 4]
# Onward transfer of a message by its recipient (LED Art 35(1)(e)); H2 implies at least
# PROVIDER_CONSENT_REQUIRED (gateway.core.handling).
OnwardTransfer = Literal["ALLOWED", "PROVIDER_CONSENT_REQUIRED", "PROHIBITED"]
ONWARD_TRANSFERS: tuple[str, ...] = get_args(OnwardTransfer)

# --- receipt ---

ReceiptStatus = Literal["DELIVERED", "REFUSED_BY_SYSTEM"]
