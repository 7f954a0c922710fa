"""Message bodies of SPEC §5, schema version 1, as strict msgspec Structs.

One Struct per message type (``MESSAGE_TYPES``), decoded with a prebuilt decoder per type: a body is
parsed and checked in one pass, never through an intermediate dict. Every object forbids unknown
members; required members are exactly the bold ones of SPEC §5 (plus the key members of nested objects,
see ``docs/messages.md``); optional members default to ``None`` and are omitted again on encoding, so a
decode/encode round trip never invents a member (an explicit JSON ``null`` is read as "absent").

Rules that one member's type cannot express (``status_reason`` is required unless ``status`` is
``COMPLETED``, a confirmed ballistic hit carries its ``confirmation`` ...) run in ``__post_init__``, so
they hold for decoded bodies and for Structs built in code alike. Every failure while decoding becomes
``TrazaError(Code.SCHEMA_INVALID, "<reason> - at `<JSON path>`")`` naming the first fault.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Hashable, Sequence
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

from gateway.core import strictjson
from gateway.core.codes import (
    BULLET_REGIONS,
    CARTRIDGE_CASE_REGIONS,
    COUNTRY_PATTERN,
    EMAIL_PATTERN,
    EU_CATEGORY_PATTERN,
    LICENCE_UNDISCLOSED,
    MESSAGE_ID_PATTERN,
    MM_PER_UNIT,
    NODE_ID_PATTERN,
    SHA256_B64URL_PATTERN,
    BreechFaceClass,
    BulletSurfaceMaterial,
    CaseMaterial,
    ConfirmationMethod,
    CrimeCodeSystem,
    CustodyEventKind,
    EssentialComponent,
    ExhibitKind,
    ExhibitOrigin,
    FiringPinAperture,
    FiringPinClass,
    FiringPinType,
    HitStatus,
    IllicitBasis,
    InformationAccuracy,
    LengthUnit,
    LicenceContext,
    LicenceStatus,
    MakeCodeSystem,
    MarkingLocation,
    MatchQuality,
    NcicGunType,
    NcicGunTypeDetail,
    NextStep,
    PrimerMaterial,
    Priority,
    ReceiptStatus,
    RecordStatus,
    RequestedInfo,
    RequestKind,
    RiflingType,
    SourceReliability,
    StatusContext,
    StatusResult,
    TopographyRegion,
    TraceStatus,
    Twist,
    is_country,
)
from gateway.core.errors import Code, TrazaError

SCHEMA_VERSION: Final = 1

# --- value types ---------------------------------------------------------------------------------------

Country = Annotated[str, Meta(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2, upper case")]
NodeId = Annotated[str, Meta(pattern=NODE_ID_PATTERN, description="Traza node id")]
MessageId = Annotated[str, Meta(pattern=MESSAGE_ID_PATTERN, description="message id (UUIDv7, lower case)")]
Sha256 = Annotated[
    str, Meta(pattern=SHA256_B64URL_PATTERN, description="SHA-256 digest, base64url without padding")
]
Date = Annotated[dt.date, Meta(description="calendar date YYYY-MM-DD")]
DateTime = Annotated[dt.datetime, Meta(tz=True, description="RFC 3339 date-time with an offset")]
Year = Annotated[int, Meta(ge=1000, le=9999, description="four-digit year")]
# Short identifiers: references, case numbers, codes.
Token = Annotated[str, Meta(min_length=1, max_length=128)]
# Names of people, organisations, places, makes, models, markings.
Name = Annotated[str, Meta(min_length=1, max_length=256)]
# Free text.
Text = Annotated[str, Meta(min_length=1, max_length=16384)]
Serial = Annotated[str, Meta(min_length=1, max_length=64, description="serial number as marked")]
Calibre = Annotated[str, Meta(min_length=1, max_length=64, description="normalised calibre, e.g. 9x19mm")]
Email = Annotated[str, Meta(pattern=EMAIL_PATTERN, max_length=254)]
EuCategory = Annotated[str, Meta(pattern=EU_CATEGORY_PATTERN, description="Directive (EU) 2021/555 category")]
# Positive measures; integers stay integers so a round trip does not turn 114 into 114.0.
Millimetres = Annotated[int, Meta(gt=0, le=10000)] | Annotated[float, Meta(gt=0, le=10000)]
Grams = Annotated[int, Meta(gt=0, le=100000)] | Annotated[float, Meta(gt=0, le=100000)]
Metres = Annotated[float, Meta(gt=0, le=1)]
Score = Annotated[int, Meta(ge=-(10**15), le=10**15)] | Annotated[float, Meta(ge=-1e15, le=1e15)]
Count = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Pixels = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Lands = Annotated[int, Meta(ge=0, le=64)]
Length = Annotated[int, Meta(gt=0, le=10000)] | Annotated[float, Meta(gt=0, le=10000)]
Days = Annotated[int, Meta(ge=0, le=36500, description="whole days")]

_UNIQUE: Final = {"uniqueItems": True}


class RuleViolation(ValueError):
    """A conditional rule of SPEC §5 failed. ``field`` is the JSON path relative to the object checked."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _unique(values: Sequence[Hashable] | None, field: str) -> None:
    if values is None:
        return
    seen: set[Hashable] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise RuleViolation(f"{field}[{i}]", f"duplicate value {v!r}")
        seen.add(v)


class _Obj(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every body and nested object: strict, immutable, optional members omitted when unset."""


# --- shared Firearm object -----------------------------------------------------------------------------


class MakeCode(_Obj, frozen=True, kw_only=True):
    """A manufacturer code in a named code system (e.g. NCIC_MAK `GLC` for Glock)."""

    system: MakeCodeSystem
    code: Token


class ImportMarking(_Obj, frozen=True, kw_only=True):
    """Import marking (ITI §8(b)): country and, where possible, year of import."""

    country_of_import: Country
    year_of_import: Year | None = None


class Importer(_Obj, frozen=True, kw_only=True):
    """The importer named on the firearm or in the records."""

    name: Name
    country: Country | None = None


class ComponentMarking(_Obj, frozen=True, kw_only=True):
    """An essential component (Directive (EU) 2021/555 Art 1(1)(2)) and its own serial or unique marking
    (Art 4(5)(b): recorded where it differs from the frame's or receiver's)."""

    component: EssentialComponent
    serial_or_marking: Name


class StateStockTransferMarking(_Obj, frozen=True, kw_only=True):
    """ITI §8(c): the marking applied on transfer from government stocks to permanent civilian use,
    identifying the country from whose stocks the firearm was transferred."""

    country: Country


class BarrelLength(_Obj, frozen=True, kw_only=True):
    """Barrel length with its unit (NIEM 6 j:FirearmBarrelLengthMeasure)."""

    value: Length
    unit: LengthUnit

    def millimetres(self) -> float:
        return float(self.value) * MM_PER_UNIT[self.unit]


class Firearm(_Obj, frozen=True, kw_only=True):
    """Shared Firearm object (SPEC §5). `type` is the NCIC gun type letter, `type_detail` the second.

    Every member is optional here (a status hit or a licence's markings may name a firearm by its serial
    alone); a trace request's firearm must carry the ITI §8(a) marking elements (:func:`admission_fault`).
    """

    serial_number: Serial | None = None
    serial_obliterated: bool | None = None
    make_name: Name | None = None
    make_codes: list[MakeCode] | None = None
    model: Name | None = None
    type: NcicGunType | None = None
    type_detail: NcicGunTypeDetail | None = None
    calibre: Calibre | None = None
    country_of_manufacture: Country | None = None
    place_of_manufacture: Name | None = None
    year_of_manufacture: Year | None = None
    import_marking: ImportMarking | None = None
    importer: Importer | None = None
    additional_markings: list[Name] | None = None
    barrel_length_mm: Millimetres | None = None
    eu_category: EuCategory | None = None
    free_text: Text | None = None
    marking_location: MarkingLocation | None = None
    essential_components: Annotated[list[ComponentMarking], Meta(extra_json_schema=_UNIQUE)] | None = None
    state_stock_transfer_marking: StateStockTransferMarking | None = None
    barrel_length: BarrelLength | None = None

    def __post_init__(self) -> None:
        _unique([(c.component, c.serial_or_marking) for c in self.essential_components or ()],
                "essential_components")
        if self.barrel_length is not None and self.barrel_length_mm is not None:
            mm = self.barrel_length.millimetres()
            if abs(mm - float(self.barrel_length_mm)) > 0.5:
                raise RuleViolation("barrel_length", f"{self.barrel_length.value} {self.barrel_length.unit} "
                                    f"({mm:g} mm) contradicts barrel_length_mm {self.barrel_length_mm}; give one")
        if self.free_text is None:
            if self.type == "Z":
                raise RuleViolation("free_text", "required when type is `Z` (NCIC: describe the firearm)")
            for mc in self.make_codes or ():
                if mc.system == "NCIC_MAK" and mc.code == "ZZZ":
                    raise RuleViolation("free_text", "required when the NCIC make code is `ZZZ`")


# --- trace.request -------------------------------------------------------------------------------------


class Location(_Obj, frozen=True, kw_only=True):
    city: Name | None = None
    admin_area: Name | None = None
    country: Country | None = None


class Recovery(_Obj, frozen=True, kw_only=True):
    """Where, when and how the firearm was recovered."""

    date: Date
    location: Location | None = None
    circumstances: Text | None = None


class CaseRef(_Obj, frozen=True, kw_only=True):
    """A case number and the agency that issued it."""

    issuer: Name
    number: Token


class Requester(_Obj, frozen=True, kw_only=True):
    agency: Name | None = None
    unit: Name | None = None
    officer: Name | None = None
    email: Email | None = None


class CrimeCode(_Obj, frozen=True, kw_only=True):
    """The offence the firearm is linked to (ATF F 3312.1 item 2a "NCIC Crime Code"), in a named list."""

    system: CrimeCodeSystem
    code: Token
    text: Name | None = None


class TraceRequest(_Obj, frozen=True, kw_only=True):
    """trace.request: ask the country of manufacture or import to trace a recovered firearm (or, for a
    SUSPECT_GUN_REFERRAL, one not yet recovered: `recovery` is then optional)."""

    request_kind: RequestKind
    firearm: Firearm
    illicit_basis: Annotated[list[IllicitBasis], Meta(min_length=1, extra_json_schema=_UNIQUE)]
    legal_basis: Text
    intended_use: Text
    recovery: Recovery | None = None
    case_refs: list[CaseRef] | None = None
    requested_info: Annotated[list[RequestedInfo], Meta(extra_json_schema=_UNIQUE)] | None = None
    respond_by: Date | None = None
    requester: Requester | None = None
    priority: Priority | None = None
    priority_justification: Text | None = None
    crime_code: CrimeCode | None = None

    def __post_init__(self) -> None:
        _unique(self.illicit_basis, "illicit_basis")
        _unique(self.requested_info, "requested_info")
        if self.recovery is None and self.request_kind != "SUSPECT_GUN_REFERRAL":
            raise RuleViolation("recovery", f"required unless request_kind is `SUSPECT_GUN_REFERRAL` "
                                f"(request_kind is `{self.request_kind}`)")
        if self.priority == "URGENT" and self.priority_justification is None:
            raise RuleViolation("priority_justification", "required when priority is `URGENT` (ATF F 3312.1 "
                                "item 1b: say why, e.g. a suspect in custody)")


# --- trace.acknowledgement -----------------------------------------------------------------------------


class TraceAcknowledgement(_Obj, frozen=True, kw_only=True):
    """trace.acknowledgement: the requested state has received a trace request."""

    received_at: DateTime
    tracking_ref: Token | None = None
    expected_response_by: Date | None = None
    missing_information: list[Text] | None = None


# --- trace.response ------------------------------------------------------------------------------------


class StatusReason(_Obj, frozen=True, kw_only=True):
    """Why a trace is not (fully) completed, e.g. code `NO_RECORD`, `ONGOING_INVESTIGATION`."""

    code: Token
    text: Text | None = None


class CustodyEvent(_Obj, frozen=True, kw_only=True):
    """One link of the custody chain. An `EXPORTED` event names the export licence in `document_ref`."""

    event: CustodyEventKind
    date: Date
    from_party: Name | None = None
    to_party: Name | None = None
    country: Country | None = None
    document_ref: Token | None = None

    def __post_init__(self) -> None:
        if self.event == "EXPORTED" and self.document_ref is None:
            raise RuleViolation("document_ref", "required for an `EXPORTED` event (the export licence)")


class Purchaser(_Obj, frozen=True, kw_only=True):
    """The first retail purchaser of a traced firearm (personal data: LED Art 6, a person of category OTHER
    unless the case says otherwise)."""

    name: Name
    date_of_birth: Date | None = None
    address: Text | None = None
    country: Country | None = None


class Dealer(_Obj, frozen=True, kw_only=True):
    """The dealer who sold the firearm at retail, with the licence it trades under (US: the FFL number)."""

    name: Name
    licence_no: Token
    address: Text | None = None
    country: Country | None = None


class TraceResponse(_Obj, frozen=True, kw_only=True):
    """trace.response: the result of a trace. `status_reason` is required unless status is COMPLETED.
    `time_to_crime_days` is the time from the first retail sale to the recovery (ATF)."""

    status: TraceStatus
    status_reason: StatusReason | None = None
    firearm_as_recorded: Firearm | None = None
    custody_chain: list[CustodyEvent] | None = None
    confidentiality_conditions: Text | None = None
    first_retail_purchaser: Purchaser | None = None
    selling_dealer: Dealer | None = None
    time_to_crime_days: Days | None = None

    def __post_init__(self) -> None:
        if self.status != "COMPLETED" and self.status_reason is None:
            raise RuleViolation(
                "status_reason", f"required unless status is `COMPLETED` (status is `{self.status}`)"
            )


# --- firearm.status.query / answer ---------------------------------------------------------------------


class FirearmStatusQuery(_Obj, frozen=True, kw_only=True):
    """firearm.status.query: is this firearm recorded as lost, stolen, trafficked ...?"""

    serial_number: Serial
    make_name: Name | None = None
    model: Name | None = None
    calibre: Calibre | None = None
    type: NcicGunType | None = None
    context: StatusContext


class RecordOwner(_Obj, frozen=True, kw_only=True):
    """The agency that owns a lost/stolen record."""

    country: Country | None = None
    agency: Name | None = None
    case_no: Token | None = None


class StatusHit(_Obj, frozen=True, kw_only=True):
    record_ref: Token
    record_status: RecordStatus
    owner: RecordOwner | None = None
    date_of_theft_or_loss: Date | None = None
    firearm: Firearm | None = None
    match_quality: MatchQuality
    date_of_recovery: Date | None = None


class FirearmStatusAnswer(_Obj, frozen=True, kw_only=True):
    """firearm.status.answer: NO_HIT has no hits, HIT exactly one, MULTIPLE_HITS two or more."""

    result: StatusResult
    hits: list[StatusHit] | None = None
    hit_confirmation_required: bool

    def __post_init__(self) -> None:
        n = len(self.hits or ())
        if self.result == "NO_HIT" and n:
            raise RuleViolation("hits", f"must be absent or empty when result is `NO_HIT` ({n} given)")
        if self.result == "HIT" and n != 1:
            raise RuleViolation("hits", f"must hold exactly one hit when result is `HIT` ({n} given)")
        if self.result == "MULTIPLE_HITS" and n < 2:
            raise RuleViolation(
                "hits", f"must hold two or more hits when result is `MULTIPLE_HITS` ({n} given)"
            )


# --- ballistic.submission ------------------------------------------------------------------------------


class BallisticAdmin(_Obj, frozen=True, kw_only=True):
    """OpenFMC Admin block."""

    agency_id: Token | None = None
    agency_case_no: Token | None = None
    lab_id: Token | None = None
    lab_case_no: Token | None = None


class CartridgeCase(_Obj, frozen=True, kw_only=True):
    """OpenFMC cartridge-case class characteristics."""

    brand: Name | None = None
    headstamp: Name | None = None
    firing_pin_type: FiringPinType | None = None
    firing_pin_class: FiringPinClass | None = None
    firing_pin_aperture: FiringPinAperture | None = None
    breech_face_class: Annotated[list[BreechFaceClass], Meta(extra_json_schema=_UNIQUE)] | None = None
    primer_material: PrimerMaterial | None = None
    lacquered_primer: bool | None = None
    case_material: CaseMaterial | None = None

    def __post_init__(self) -> None:
        _unique(self.breech_face_class, "breech_face_class")


class Bullet(_Obj, frozen=True, kw_only=True):
    """OpenFMC bullet class characteristics (diameter in mm, unfired weight in grams)."""

    brand: Name | None = None
    diameter_mm: Millimetres | None = None
    rifling_type: RiflingType | None = None
    number_of_lands: Lands | None = None
    twist: Twist | None = None
    unfired_weight_g: Grams | None = None
    surface_material: BulletSurfaceMaterial | None = None


class Topography(_Obj, frozen=True, kw_only=True):
    """One X3P surface file (sent as a blob) and its summary; `region` is the OpenFMC ROI."""

    sha256: Sha256
    region: TopographyRegion
    size_x: Pixels | None = None
    size_y: Pixels | None = None
    increment_x_m: Metres | None = None
    increment_y_m: Metres | None = None
    instrument: Name | None = None


class CorrelationRequest(_Obj, frozen=True, kw_only=True):
    """Present = please correlate, restricted to these countries and occurrence dates."""

    countries: Annotated[list[Country], Meta(extra_json_schema=_UNIQUE)] | None = None
    date_from: Date | None = None
    date_to: Date | None = None

    def __post_init__(self) -> None:
        _unique(self.countries, "countries")
        if self.date_from is not None and self.date_to is not None and self.date_to < self.date_from:
            raise RuleViolation("date_to", f"{self.date_to} is before date_from {self.date_from}")


class BallisticSubmission(_Obj, frozen=True, kw_only=True):
    """ballistic.submission: a cartridge case or bullet with its 3-D topography for correlation."""

    exhibit_id: Token
    exhibit_kind: ExhibitKind
    origin: ExhibitOrigin
    calibre: Calibre
    occurrence_date: Date
    admin: BallisticAdmin | None = None
    firearm: Firearm | None = None
    cartridge_case: CartridgeCase | None = None
    bullet: Bullet | None = None
    topography: Annotated[list[Topography], Meta(min_length=1)]
    correlation: CorrelationRequest | None = None

    def __post_init__(self) -> None:
        if self.origin == "TEST_FIRE" and self.firearm is None:
            raise RuleViolation("firearm", "required when origin is `TEST_FIRE` (the test-fired firearm)")
        if self.exhibit_kind == "CARTRIDGE_CASE":
            wrong, allowed = "bullet", CARTRIDGE_CASE_REGIONS
        else:
            wrong, allowed = "cartridge_case", BULLET_REGIONS
        if getattr(self, wrong) is not None:
            raise RuleViolation(wrong, f"not allowed when exhibit_kind is `{self.exhibit_kind}`")
        for i, t in enumerate(self.topography):
            if t.region != "Other" and t.region not in allowed:
                raise RuleViolation(
                    f"topography[{i}].region",
                    f"`{t.region}` is not a region of a {self.exhibit_kind.lower()}",
                )


# --- ballistic.hit -------------------------------------------------------------------------------------


class HitExhibit(_Obj, frozen=True, kw_only=True):
    exhibit_id: Token
    owner_country: Country
    agency_case_no: Token | None = None


class HitCorrelation(_Obj, frozen=True, kw_only=True):
    """Correlator rank and score; scores are vendor-specific and not comparable across algorithms."""

    rank: Count | None = None
    score: Score | None = None
    algorithm: Name | None = None


class HitConfirmation(_Obj, frozen=True, kw_only=True):
    """Confirmation of a hit by a firearms examiner."""

    examiner: Name
    lab_id: Token | None = None
    method: ConfirmationMethod | None = None
    date: Date


class BallisticHit(_Obj, frozen=True, kw_only=True):
    """ballistic.hit: two or more exhibits linked; `confirmation` is required for CONFIRMED_HIT."""

    hit_id: Token
    status: HitStatus
    exhibits: Annotated[list[HitExhibit], Meta(min_length=2)]
    correlation: HitCorrelation | None = None
    confirmation: HitConfirmation | None = None
    next_steps: Annotated[list[NextStep], Meta(extra_json_schema=_UNIQUE)] | None = None

    def __post_init__(self) -> None:
        if self.status == "CONFIRMED_HIT" and self.confirmation is None:
            raise RuleViolation("confirmation", "required when status is `CONFIRMED_HIT`")
        _unique([(e.exhibit_id, e.owner_country) for e in self.exhibits], "exhibits")
        _unique(self.next_steps, "next_steps")


# --- licence.verify.query / answer ---------------------------------------------------------------------


class LicenceVerifyQuery(_Obj, frozen=True, kw_only=True):
    """licence.verify.query: is this export licence genuine, and does it cover these firearms?"""

    licence_number: Token
    issuing_state: Country
    context: LicenceContext
    firearm_markings: list[Firearm] | None = None


class LicenceGoods(_Obj, frozen=True, kw_only=True):
    description: Text
    quantity: Count | None = None
    markings: list[Name] | None = None


class Party(_Obj, frozen=True, kw_only=True):
    """An exporter or end user: a name, the business name it trades under, its address."""

    name: Name
    business_name: Name | None = None
    address: Text | None = None
    country: Country | None = None


class Licence(_Obj, frozen=True, kw_only=True):
    """Export licence record (Reg. (EU) 258/2012 Art. 12), with its exporter (Decision (CFSP) 2021/38)."""

    place_of_issue: Name | None = None
    date_of_issue: Date | None = None
    date_of_expiry: Date | None = None
    country_of_export: Country | None = None
    country_of_import: Country | None = None
    transit_countries: Annotated[list[Country], Meta(extra_json_schema=_UNIQUE)] | None = None
    consignee: Name | None = None
    final_recipient: Name | None = None
    goods: list[LicenceGoods] | None = None
    end_use: Text | None = None
    exporter: Party | None = None

    def __post_init__(self) -> None:
        _unique(self.transit_countries, "transit_countries")
        if (
            self.date_of_issue is not None
            and self.date_of_expiry is not None
            and self.date_of_expiry < self.date_of_issue
        ):
            raise RuleViolation(
                "date_of_expiry", f"{self.date_of_expiry} is before date_of_issue {self.date_of_issue}"
            )


class EndUserCertificate(_Obj, frozen=True, kw_only=True):
    """The end-user certificate the licence was granted on (Council Decision (CFSP) 2021/38, common
    elements of end-user certificates for exports of small arms and light weapons)."""

    number: Token
    issuing_authority: Name | None = None
    date_of_issue: Date | None = None
    end_user: Party | None = None
    country_of_final_destination: Country | None = None
    end_use_statement: Text | None = None
    signatory_name: Name | None = None
    signatory_position: Name | None = None
    non_reexport_clause: bool | None = None
    post_shipment_verification_consent: bool | None = None
    government_authenticated: bool | None = None


class LicenceVerifyAnswer(_Obj, frozen=True, kw_only=True):
    """licence.verify.answer: NOT_FOUND and NOT_DISCLOSABLE answers carry no `licence` and no `euc`."""

    status: LicenceStatus
    licence: Licence | None = None
    covers_firearm: bool | None = None
    euc: EndUserCertificate | None = None

    def __post_init__(self) -> None:
        if self.status in LICENCE_UNDISCLOSED:
            for name in ("licence", "euc"):
                if getattr(self, name) is not None:
                    raise RuleViolation(name, f"not allowed when status is `{self.status}`")


# --- notice, receipt, error ----------------------------------------------------------------------------


class Notice(_Obj, frozen=True, kw_only=True):
    """notice: free-form information, optionally linked to earlier messages. A notice whose content is
    intelligence (`intelligence: true`) carries the Europol evaluation codes (Regulation (EU) 2016/794
    Art 29): `source_reliability` and `information_accuracy`."""

    title: Name
    text: Text
    links: list[MessageId] | None = None
    intelligence: bool | None = None
    source_reliability: SourceReliability | None = None
    information_accuracy: InformationAccuracy | None = None

    def __post_init__(self) -> None:
        codes = {"source_reliability": self.source_reliability, "information_accuracy": self.information_accuracy}
        given = [k for k, v in codes.items() if v is not None]
        if self.intelligence is False and given:
            raise RuleViolation("intelligence", f"`false` contradicts {given[0]} (evaluation codes are given "
                                "to intelligence only); set it true or leave the codes out")
        if self.intelligence or given:
            for name, value in codes.items():
                if value is None:
                    raise RuleViolation(name, "required when the content is intelligence (Europol Regulation "
                                        "Art 29: evaluate the source (A, B, C, X) and the information (1-4))")


class Receipt(_Obj, frozen=True, kw_only=True, rename={"for_": "for"}):
    """receipt: the recipient's national system has taken (or refused) the message `for`."""

    for_: MessageId
    dig: Sha256
    status: ReceiptStatus
    at: DateTime
    detail: Text | None = None


class ErrorMessage(_Obj, frozen=True, kw_only=True, rename={"for_": "for"}):
    """error: a node gave up on the message `for`; `code` is a SPEC §9 error code."""

    for_: MessageId
    code: Code
    at: DateTime
    by: NodeId
    detail: Text | None = None


# --- registry and codec --------------------------------------------------------------------------------

MESSAGE_TYPES: dict[str, type[msgspec.Struct]] = {
    "trace.request": TraceRequest,
    "trace.acknowledgement": TraceAcknowledgement,
    "trace.response": TraceResponse,
    "firearm.status.query": FirearmStatusQuery,
    "firearm.status.answer": FirearmStatusAnswer,
    "ballistic.submission": BallisticSubmission,
    "ballistic.hit": BallisticHit,
    "licence.verify.query": LicenceVerifyQuery,
    "licence.verify.answer": LicenceVerifyAnswer,
    "notice": Notice,
    "receipt": Receipt,
    "error": ErrorMessage,
}
# Reverse lookup: Struct class -> message type.
MESSAGE_TYPE_OF: dict[type[msgspec.Struct], str] = {cls: mt for mt, cls in MESSAGE_TYPES.items()}

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    mt: msgspec.json.Decoder(cls) for mt, cls in MESSAGE_TYPES.items()
}
_ENCODER: Final = msgspec.json.Encoder()


class BodyInvalid(TrazaError):
    """A body failed validation: ``Code.SCHEMA_INVALID`` with the JSON path of the first fault.

    ``detail`` is ``"<reason> - at `<path>`"``; ``mt``, ``path`` and ``reason`` are also kept apart.
    """

    def __init__(self, mt: str, path: str, reason: str) -> None:
        super().__init__(Code.SCHEMA_INVALID, f"{reason} - at `{path}`")
        self.mt = mt
        self.path = path
        self.reason = reason


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD_FAULT = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>.*)`\Z", re.DOTALL)


def _member(path: str, name: str) -> str:
    """``path`` extended by the member ``name`` (quoted when it is not a plain identifier)."""
    if _IDENT.match(name):
        return f"{path}.{name}"
    return f"{path}[{msgspec.json.encode(name).decode()}]"


def _relative(path: str, rel: str) -> str:
    """``path`` extended by a relative path written by a rule (``"hits"``, ``"topography[0].region"``)."""
    return path + rel if rel.startswith("[") else f"{path}.{rel}"


_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _unwrap(t: mi.Type) -> mi.Type:
    while isinstance(t, mi.Metadata):
        t = t.type
    return t


def _type_at(cls: type[msgspec.Struct], path: str) -> mi.Type | None:
    """The msgspec type of the value at JSON ``path`` (``$.a.b[0]``) in a body of Struct ``cls``."""
    t: mi.Type = mi.type_info(cls)
    for m in _STEP.finditer(path.removeprefix("$")):
        name = m.group(1) or (msgspec.json.decode(m.group(3)) if m.group(3) else None)
        u = _unwrap(t)
        options = list(u.types) if isinstance(u, mi.UnionType) else [u]
        found: mi.Type | None = None
        for opt in map(_unwrap, options):
            if name is not None and isinstance(opt, mi.StructType):
                found = next((f.type for f in opt.fields if f.encode_name == name), None)
            elif name is None and isinstance(opt, mi.ListType):
                found = opt.item_type
            if found is not None:
                break
        if found is None:
            return None
        t = found
    return t


def _allowed(t: mi.Type | None) -> list[str]:
    """The values a closed list (Literal or enum, maybe optional) admits; [] for anything else."""
    if t is None:
        return []
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return [v for sub in t.types for v in _allowed(sub)]
    if isinstance(t, mi.LiteralType):
        return [str(v) for v in t.values]
    if isinstance(t, mi.EnumType):
        return [str(e.value) for e in t.cls]
    return []


def _members(t: mi.Type | None) -> list[str]:
    """The member names of the object type ``t`` (maybe optional); [] if it is not an object."""
    if t is None:
        return []
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return next((ms for ms in map(_members, t.types) if ms), [])
    return [f.encode_name for f in t.fields] if isinstance(t, mi.StructType) else []


def _field_name(path: str) -> str:
    """The last member name of a JSON path: ``illicit_basis`` for ``$.illicit_basis[1]``."""
    names = [m.group(1) or str(msgspec.json.decode(m.group(3))) for m in _STEP.finditer(path)
             if m.group(1) or m.group(3)]
    return names[-1] if names else "body"


def _explain(mt: str, path: str, reason: str) -> str:
    """msgspec's reason with what a person needs to fix it: the values a code list allows, or the members
    an object has (and, at the top level, the message type a stray member belongs to)."""
    cls = MESSAGE_TYPES[mt]
    if reason.startswith("Invalid enum value"):
        allowed = _allowed(_type_at(cls, path))
        if allowed:
            return f"{reason} for {_field_name(path)}; allowed: {', '.join(allowed)}"
        return reason
    m = _FIELD_FAULT.match(reason)
    if m and reason.startswith("Object contains unknown"):
        name = m.group("name")
        hint = ""
        if path == "$":
            owners = [other for other, c in MESSAGE_TYPES.items()
                      if other != mt and name in (f.encode_name for f in msgspec.structs.fields(c))]
            if owners:
                hint = f"; {' and '.join(owners)} has it, {mt} does not: is `type` right?"
        members = _members(_type_at(cls, path))
        return f"{reason}{hint}" + (f" (members here: {', '.join(members)})" if members else "")
    return reason


def _schema_error(mt: str, exc: msgspec.ValidationError) -> BodyInvalid:
    """Turn msgspec's ``"<reason> - at `$.path`"`` into a BodyInvalid whose path names the member at
    fault: a missing or unknown member, or the member a conditional rule is about; the reason says what
    a code list allows and what members an object has (:func:`_explain`)."""
    msg = str(exc)
    reason, sep, tail = msg.rpartition(" - at `")
    if sep and tail.endswith("`"):
        path = tail[:-1]
    else:
        reason, path = msg, "$"
    cause = exc.__cause__
    if isinstance(cause, RuleViolation):
        return BodyInvalid(mt, _relative(path, cause.field), cause.reason)
    m = _FIELD_FAULT.match(reason)
    if m:
        return BodyInvalid(mt, _member(path, m.group("name")), _explain(mt, path, reason))
    return BodyInvalid(mt, path, _explain(mt, path, reason))


def _is_country_type(t: mi.Type) -> bool:
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return any(_is_country_type(sub) for sub in t.types)
    if isinstance(t, mi.ListType):
        return _is_country_type(t.item_type)
    return isinstance(t, mi.StrType) and t.pattern == COUNTRY_PATTERN


_COUNTRY_FIELDS: dict[type, tuple[tuple[str, str, bool], ...]] = {}


def _country_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, member name, holds a country code) of every field of Struct ``cls``, cached."""
    found = _COUNTRY_FIELDS.get(cls)
    if found is None:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        found = tuple((f.name, f.encode_name, _is_country_type(f.type)) for f in info.fields)
        _COUNTRY_FIELDS[cls] = found
    return found


def _country_fault(value: Any, path: str) -> tuple[str, str] | None:
    """(path, reason) of the first country code in a decoded body that ISO 3166-1 does not assign. The
    pattern ``^[A-Z]{2}$`` is checked while decoding; this is the list itself (:func:`codes.is_country`)."""
    if isinstance(value, msgspec.Struct):
        for attr, member, country in _country_fields(type(value)):
            v = getattr(value, attr)
            at = _member(path, member)
            if country:
                for i, code in enumerate(v if isinstance(v, list) else [v]):
                    if isinstance(code, str) and not is_country(code):
                        where = f"{at}[{i}]" if isinstance(v, list) else at
                        return where, (f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. MX, ES, AT, US); "
                                       f"set {member} to the code of a country")
            elif v is not None:
                fault = _country_fault(v, at)
                if fault:
                    return fault
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, msgspec.Struct):
                fault = _country_fault(item, f"{path}[{i}]")
                if fault:
                    return fault
    return None


# --- admission: rules for a message being accepted now, not for one already held ------------------------

ITI_8A: Final = "ITI §8(a): a trace is made of the marking elements"


def admission_fault(mt: str, body: msgspec.Struct) -> tuple[str, str] | None:
    """(path, reason) of the first admission rule ``body`` breaks, else None.

    Admission rules hold for a message being accepted (submitted at its origin, received at its
    recipient, ``traza schema check``), not for one a node already holds: a version-1 body accepted
    before the rule existed stays readable and deliverable (``decode_body`` without ``admit``). One rule so
    far: a trace.request's firearm carries the ITI §8(a) marking elements, the make (`make_name`), the
    serial number (or `serial_obliterated: true`) and the country of manufacture (unless the firearm is
    not marked as the ITI requires: `NOT_MARKED_PER_ITI` among the illicit_basis)."""
    if not isinstance(body, TraceRequest):
        return None
    fa = body.firearm
    if fa.make_name is None:
        return "$.firearm.make_name", f"required in a trace request ({ITI_8A}: the name of the manufacturer)"
    if fa.serial_number is None and fa.serial_obliterated is not True:
        return "$.firearm.serial_number", (f"required in a trace request unless serial_obliterated is true "
                                           f"({ITI_8A}: the serial number)")
    if fa.country_of_manufacture is None and "NOT_MARKED_PER_ITI" not in body.illicit_basis:
        return "$.firearm.country_of_manufacture", (
            f"required in a trace request unless illicit_basis has NOT_MARKED_PER_ITI ({ITI_8A}: the country "
            "of manufacture, where marked)")
    return None


def _unknown(mt: str) -> TrazaError:
    return TrazaError(
        Code.UNKNOWN_TYPE, f"message type {mt!r} is not known (v1 types: {', '.join(MESSAGE_TYPES)})"
    )


def decode_body(mt: str, data: bytes, *, admit: bool = False) -> msgspec.Struct:
    """Decode and validate the UTF-8 JSON body of a message of type ``mt`` in one pass; with ``admit``
    also the admission rules (:func:`admission_fault`) of a message being accepted now.

    Raises ``TrazaError(UNKNOWN_TYPE)`` for an unknown ``mt``, ``TrazaError(MALFORMED)`` for a text that is
    not strict JSON (SPEC §3.4: a repeated member name, nesting deeper than 32, an integer outside ±2^53, a
    number that is not finite, not UTF-8) and ``BodyInvalid`` (a ``TrazaError`` with
    code ``SCHEMA_INVALID``) naming the JSON path of the first fault.
    """
    dec = _DECODERS.get(mt)
    if dec is None:
        raise _unknown(mt)
    try:
        strictjson.check(data, f"{mt} body")  # SPEC §3.4: refused as malformed, before any schema rule
    except strictjson.StrictJSONError as exc:
        if exc.rule == "syntax":  # not JSON at all: the body has no shape to validate
            raise BodyInvalid(mt, "$", f"body is not valid UTF-8 JSON ({exc.detail})") from None
        raise
    try:
        body: msgspec.Struct = dec.decode(data)
    except msgspec.ValidationError as exc:
        raise _schema_error(mt, exc) from None
    except msgspec.DecodeError as exc:
        raise BodyInvalid(mt, "$", f"body is not valid UTF-8 JSON ({exc})") from None
    fault = _country_fault(body, "$")
    if fault is None and admit:
        fault = admission_fault(mt, body)
    if fault:
        raise BodyInvalid(mt, *fault)
    return body


def admit_body(mt: str, data: bytes) -> msgspec.Struct:
    """:func:`decode_body` with the admission rules: for a message being accepted (origin, recipient)."""
    return decode_body(mt, data, admit=True)


def validate_body(mt: str, obj: dict[str, Any], *, admit: bool = False) -> msgspec.Struct:
    """Validate a body given as Python data (e.g. built by an adapter) with the same rules and errors as
    ``decode_body``. Strings are accepted where the wire carries dates and date-times."""
    # Through the wire decoder, so the first fault (and its path) is exactly the one decode_body reports:
    # msgspec.convert checks some constraints in another order (e.g. array length before items).
    if mt not in MESSAGE_TYPES:
        raise _unknown(mt)
    try:
        data = _ENCODER.encode(obj)
    except (TypeError, msgspec.EncodeError) as exc:
        raise BodyInvalid(mt, "$", f"not JSON data: {exc}") from None
    return decode_body(mt, data, admit=admit)


def encode_body(obj: msgspec.Struct) -> bytes:
    """UTF-8 JSON of a body (members in declaration order, unset optional members omitted)."""
    return _ENCODER.encode(obj)


def message_type(obj: msgspec.Struct) -> str:
    """The ``mt`` of a body Struct; raises ``TrazaError(UNKNOWN_TYPE)`` for any other object."""
    mt = MESSAGE_TYPE_OF.get(type(obj))
    if mt is None:
        raise TrazaError(Code.UNKNOWN_TYPE, f"{type(obj).__name__} is not a message body type")
    return mt


# --- JSON Schema ---------------------------------------------------------------------------------------

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def schema_id(mt: str) -> str:
    return f"urn:traza:schema:{mt}:v{SCHEMA_VERSION}"


def _present(*fields: str) -> dict[str, Any]:
    return {"required": list(fields), "properties": {f: {"not": {"type": "null"}} for f in fields}}


def _absent(field: str) -> dict[str, Any]:
    return {"properties": {field: {"type": "null"}}}


def _when(field: str, values: str | Sequence[str], then: dict[str, Any]) -> dict[str, Any]:
    cond = {"const": values} if isinstance(values, str) else {"enum": list(values)}
    return {"if": {"properties": {field: cond}, "required": [field]}, "then": then}


def _regions(allowed: Sequence[str]) -> dict[str, Any]:
    return {
        "properties": {"topography": {"items": {"properties": {"region": {"enum": [*allowed, "Other"]}}}}}
    }


# The ``__post_init__`` rules above, restated in JSON Schema for integrators (keyed by Struct name), and
# the rules JSON Schema cannot state, as text.
_SCHEMA_RULES: Final[dict[str, list[dict[str, Any]]]] = {
    "Firearm": [
        _when("type", "Z", _present("free_text")),
        {
            "if": {
                "properties": {
                    "make_codes": {
                        "type": "array",
                        "contains": {
                            "type": "object",
                            "properties": {"system": {"const": "NCIC_MAK"}, "code": {"const": "ZZZ"}},
                            "required": ["system", "code"],
                        },
                    }
                },
                "required": ["make_codes"],
            },
            "then": _present("free_text"),
        },
    ],
    "CustodyEvent": [_when("event", "EXPORTED", _present("document_ref"))],
    "TraceRequest": [
        {"if": {"properties": {"request_kind": {"const": "SUSPECT_GUN_REFERRAL"}}, "required": ["request_kind"]},
         "else": _present("recovery")},
        _when("priority", "URGENT", _present("priority_justification")),
    ],
    "Notice": [
        {"if": {"properties": {"intelligence": {"const": True}}, "required": ["intelligence"]},
         "then": _present("source_reliability", "information_accuracy")},
        {"if": {"anyOf": [{"required": ["source_reliability"]}, {"required": ["information_accuracy"]}]},
         "then": {"allOf": [_present("source_reliability", "information_accuracy"),
                            {"properties": {"intelligence": {"enum": [True, None]}}}]}},
    ],
    "TraceResponse": [
        {"if": {"properties": {"status": {"const": "COMPLETED"}}}, "else": _present("status_reason")}
    ],
    "FirearmStatusAnswer": [
        _when("result", "NO_HIT", {"properties": {"hits": {"anyOf": [{"type": "null"}, {"maxItems": 0}]}}}),
        _when(
            "result",
            "HIT",
            {"required": ["hits"], "properties": {"hits": {"type": "array", "minItems": 1, "maxItems": 1}}},
        ),
        _when(
            "result",
            "MULTIPLE_HITS",
            {"required": ["hits"], "properties": {"hits": {"type": "array", "minItems": 2}}},
        ),
    ],
    "BallisticSubmission": [
        _when("origin", "TEST_FIRE", _present("firearm")),
        _when(
            "exhibit_kind",
            "CARTRIDGE_CASE",
            {**_absent("bullet"), "allOf": [_regions(CARTRIDGE_CASE_REGIONS)]},
        ),
        _when("exhibit_kind", "BULLET", {**_absent("cartridge_case"), "allOf": [_regions(BULLET_REGIONS)]}),
    ],
    "BallisticHit": [_when("status", "CONFIRMED_HIT", _present("confirmation"))],
    "LicenceVerifyAnswer": [
        _when("status", sorted(LICENCE_UNDISCLOSED), {"allOf": [_absent("licence"), _absent("euc")]})
    ],
}
_SCHEMA_TEXT_RULES: Final[dict[str, list[str]]] = {
    "CorrelationRequest": ["date_to is not before date_from"],
    "Licence": ["date_of_expiry is not before date_of_issue"],
    "BallisticHit": ["no two exhibits have the same (exhibit_id, owner_country)"],
    "Firearm": ["barrel_length and barrel_length_mm, when both are given, agree within 0.5 mm"],
}

# Admission rules (:func:`admission_fault`), as JSON Schema under ``x-traza-admission`` of the body type:
# a message being accepted must meet them too; a body held before they existed need not.
_ADMISSION_RULES: Final[dict[str, dict[str, Any]]] = {
    "TraceRequest": {
        "$comment": "ITI §8(a) marking elements, required of a trace request being accepted (origin and "
                    "recipient) but not of one already held",
        "properties": {"firearm": {"allOf": [
            _present("make_name"),
            {"anyOf": [_present("serial_number"),
                       {"required": ["serial_obliterated"], "properties": {"serial_obliterated": {"const": True}}}]},
        ]}},
        "if": {"properties": {"illicit_basis": {"contains": {"const": "NOT_MARKED_PER_ITI"}}}},
        "else": {"properties": {"firearm": _present("country_of_manufacture")}},
    },
}


def _decorate(name: str, schema: dict[str, Any]) -> None:
    rules = _SCHEMA_RULES.get(name)
    if rules:
        schema["allOf"] = [*schema.get("allOf", []), *rules]
    admission = _ADMISSION_RULES.get(name)
    if admission:
        schema["x-traza-admission"] = admission
    texts = _SCHEMA_TEXT_RULES.get(name)
    if texts:
        schema["$comment"] = "Also checked: " + "; ".join(texts) + "."


def json_schema(mt: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message type's body, with ``$id`` and ``title`` naming it."""
    cls = MESSAGE_TYPES.get(mt)
    if cls is None:
        raise _unknown(mt)
    raw = msgspec.json.schema(cls)
    defs: dict[str, Any] = raw.get("$defs", {})
    root_name = str(raw["$ref"]).rsplit("/", 1)[1]
    root: dict[str, Any] = defs.pop(root_name)
    for name, sub in defs.items():
        _decorate(name, sub)
    _decorate(root_name, root)
    root.pop("title", None)
    out: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": schema_id(mt),
        "title": f"{mt} (Traza message body, schema version {SCHEMA_VERSION})",
        "x-traza-mt": mt,
        "x-traza-sv": SCHEMA_VERSION,
        **root,
    }
    if defs:
        out["$defs"] = defs
    return out


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per message type, keyed by ``mt``."""
    return {mt: json_schema(mt) for mt in MESSAGE_TYPES}
