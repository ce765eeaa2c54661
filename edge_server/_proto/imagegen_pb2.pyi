from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreviewFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREVIEW_FORMAT_NONE: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_JPEG: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_PNG: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_WEBP: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_RAW_LATENT: _ClassVar[PreviewFormat]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_RGB8: _ClassVar[ImageFormat]
PREVIEW_FORMAT_NONE: PreviewFormat
PREVIEW_FORMAT_JPEG: PreviewFormat
PREVIEW_FORMAT_PNG: PreviewFormat
PREVIEW_FORMAT_WEBP: PreviewFormat
PREVIEW_FORMAT_RAW_LATENT: PreviewFormat
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
IMAGE_FORMAT_RAW_RGB8: ImageFormat

class PreviewOptions(_message.Message):
    __slots__ = ("format", "max_side", "every_n_steps", "quality")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    EVERY_N_STEPS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    format: PreviewFormat
    max_side: int
    every_n_steps: int
    quality: int
    def __init__(self, format: _Optional[_Union[PreviewFormat, str]] = ..., max_side: _Optional[int] = ..., every_n_steps: _Optional[int] = ..., quality: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "width", "height", "steps", "seed", "true_cfg_scale", "num_images", "preview", "output_format", "output_quality", "request_id")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRUE_CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    seed: int
    true_cfg_scale: float
    num_images: int
    preview: PreviewOptions
    output_format: ImageFormat
    output_quality: int
    request_id: str
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., steps: _Optional[int] = ..., seed: _Optional[int] = ..., true_cfg_scale: _Optional[float] = ..., num_images: _Optional[int] = ..., preview: _Optional[_Union[PreviewOptions, _Mapping]] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., output_quality: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "queued", "started", "step", "image_chunk", "done")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    queued: Queued
    started: Started
    step: Step
    image_chunk: ImageChunk
    done: Done
    def __init__(self, request_id: _Optional[str] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., step: _Optional[_Union[Step, _Mapping]] = ..., image_chunk: _Optional[_Union[ImageChunk, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position", "queue_depth")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    position: int
    queue_depth: int
    def __init__(self, position: _Optional[int] = ..., queue_depth: _Optional[int] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("seed", "width", "height", "steps", "num_images", "true_cfg_scale", "queue_ms", "model")
    SEED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    TRUE_CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    seed: int
    width: int
    height: int
    steps: int
    num_images: int
    true_cfg_scale: float
    queue_ms: float
    model: str
    def __init__(self, seed: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., steps: _Optional[int] = ..., num_images: _Optional[int] = ..., true_cfg_scale: _Optional[float] = ..., queue_ms: _Optional[float] = ..., model: _Optional[str] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("image_index", "step", "total_steps", "sigma", "elapsed_ms", "preview_image", "preview_format", "preview_width", "preview_height", "raw_latent", "latent_shape", "eta_ms")
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RAW_LATENT_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    image_index: int
    step: int
    total_steps: int
    sigma: float
    elapsed_ms: float
    preview_image: bytes
    preview_format: PreviewFormat
    preview_width: int
    preview_height: int
    raw_latent: bytes
    latent_shape: _containers.RepeatedScalarFieldContainer[int]
    eta_ms: float
    def __init__(self, image_index: _Optional[int] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., sigma: _Optional[float] = ..., elapsed_ms: _Optional[float] = ..., preview_image: _Optional[bytes] = ..., preview_format: _Optional[_Union[PreviewFormat, str]] = ..., preview_width: _Optional[int] = ..., preview_height: _Optional[int] = ..., raw_latent: _Optional[bytes] = ..., latent_shape: _Optional[_Iterable[int]] = ..., eta_ms: _Optional[float] = ...) -> None: ...

class ImageChunk(_message.Message):
    __slots__ = ("image_index", "seed", "format", "width", "height", "data", "last", "offset", "total_size")
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    image_index: int
    seed: int
    format: ImageFormat
    width: int
    height: int
    data: bytes
    last: bool
    offset: int
    total_size: int
    def __init__(self, image_index: _Optional[int] = ..., seed: _Optional[int] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("queue_ms", "prompt_encode_ms", "denoise_ms", "vae_decode_ms", "image_encode_ms", "engine_ms", "total_ms", "step_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_MS_FIELD_NUMBER: _ClassVar[int]
    VAE_DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    STEP_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    prompt_encode_ms: float
    denoise_ms: float
    vae_decode_ms: float
    image_encode_ms: float
    engine_ms: float
    total_ms: float
    step_ms: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, queue_ms: _Optional[float] = ..., prompt_encode_ms: _Optional[float] = ..., denoise_ms: _Optional[float] = ..., vae_decode_ms: _Optional[float] = ..., image_encode_ms: _Optional[float] = ..., engine_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., step_ms: _Optional[_Iterable[float]] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("timings", "prompt_truncated", "negative_prompt_truncated", "seeds", "steps", "num_images", "previews_sent", "previews_skipped")
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_SENT_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    timings: StageTimings
    prompt_truncated: bool
    negative_prompt_truncated: bool
    seeds: _containers.RepeatedScalarFieldContainer[int]
    steps: int
    num_images: int
    previews_sent: int
    previews_skipped: int
    def __init__(self, timings: _Optional[_Union[StageTimings, _Mapping]] = ..., prompt_truncated: _Optional[bool] = ..., negative_prompt_truncated: _Optional[bool] = ..., seeds: _Optional[_Iterable[int]] = ..., steps: _Optional[int] = ..., num_images: _Optional[int] = ..., previews_sent: _Optional[int] = ..., previews_skipped: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Component(_message.Message):
    __slots__ = ("name", "present", "dtype", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    present: bool
    dtype: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., present: _Optional[bool] = ..., dtype: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Lora(_message.Message):
    __slots__ = ("path", "scale", "lightning")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    LIGHTNING_FIELD_NUMBER: _ClassVar[int]
    path: str
    scale: float
    lightning: bool
    def __init__(self, path: _Optional[str] = ..., scale: _Optional[float] = ..., lightning: _Optional[bool] = ...) -> None: ...

class SizeLimits(_message.Message):
    __slots__ = ("min_side", "max_side", "max_pixels", "multiple", "max_steps", "max_images", "max_prompt_chars")
    MIN_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    min_side: int
    max_side: int
    max_pixels: int
    multiple: int
    max_steps: int
    max_images: int
    max_prompt_chars: int
    def __init__(self, min_side: _Optional[int] = ..., max_side: _Optional[int] = ..., max_pixels: _Optional[int] = ..., multiple: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_images: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "path", "components", "lora", "default_steps", "limits", "isa", "backend", "threads", "version", "engine_version", "default_width", "default_height", "max_concurrent", "max_queue", "preview_formats", "output_formats")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STEPS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ISA_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FORMATS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    components: _containers.RepeatedCompositeFieldContainer[Component]
    lora: Lora
    default_steps: int
    limits: SizeLimits
    isa: str
    backend: str
    threads: int
    version: str
    engine_version: str
    default_width: int
    default_height: int
    max_concurrent: int
    max_queue: int
    preview_formats: _containers.RepeatedScalarFieldContainer[PreviewFormat]
    output_formats: _containers.RepeatedScalarFieldContainer[ImageFormat]
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., components: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., lora: _Optional[_Union[Lora, _Mapping]] = ..., default_steps: _Optional[int] = ..., limits: _Optional[_Union[SizeLimits, _Mapping]] = ..., isa: _Optional[str] = ..., backend: _Optional[str] = ..., threads: _Optional[int] = ..., version: _Optional[str] = ..., engine_version: _Optional[str] = ..., default_width: _Optional[int] = ..., default_height: _Optional[int] = ..., max_concurrent: _Optional[int] = ..., max_queue: _Optional[int] = ..., preview_formats: _Optional[_Iterable[_Union[PreviewFormat, str]]] = ..., output_formats: _Optional[_Iterable[_Union[ImageFormat, str]]] = ...) -> None: ...
