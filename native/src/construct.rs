//! A slotted dataclass's instance made straight into its slots (issue 14, P3: ~40 small frozen objects per
//! correlation — placements, findings, the analysis and the answer —, each a Python frame and a descriptor call per
//! field through `correlator/construct.py`'s `fast_constructor`).
//!
//! `fast_constructor`'s Python function is the reference: `obj = object.__new__(cls)`, then each field's member
//! descriptor `__set__(obj, value)` in declaration order. Here: the class's `tp_alloc` (what `object.__new__` calls
//! for a class without a `__new__` of its own) and each value stored at its member's offset (what a member
//! descriptor's `__set__` does: a new reference in, the old one — NULL on a new object — out). Only for fields that
//! are member descriptors of object slots (`Py_T_OBJECT_EX`, writable), of a class that is not abstract:
//! `SlotConstructor(cls, names)` raises `TypeError` otherwise, and Python keeps its own constructor. Keywords are handed to that one too.
//!
//! tests/test_construct.py compares the two on every class `fast_constructor` builds.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

#[pyclass(frozen, module = "correlator_native")]
struct SlotConstructor {
    class: Py<PyType>,
    offsets: Vec<ffi::Py_ssize_t>,
    fallback: PyObject, // the Python constructor: for keyword arguments
}

/// The offset of the object slot `name`'s member descriptor in `class`, or a TypeError.
fn member_offset(class: &Bound<'_, PyType>, name: &Bound<'_, PyString>) -> PyResult<ffi::Py_ssize_t> {
    let descr = class.getattr(name).map_err(|_| PyTypeError::new_err(format!("{name} is not an attribute")))?;
    unsafe {
        if ffi::Py_TYPE(descr.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
            return Err(PyTypeError::new_err(format!("{name} is not a slot")));
        }
        let member = (*(descr.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *mut ffi::PyMemberDef;
        if member.is_null() || (*member).type_code != ffi::Py_T_OBJECT_EX || (*member).flags & ffi::Py_READONLY != 0 {
            return Err(PyTypeError::new_err(format!("{name} is not a writable object slot")));
        }
        Ok((*member).offset)
    }
}

#[pymethods]
impl SlotConstructor {
    /// `class`: a slotted class whose `__new__` is `object.__new__`; `names`: its fields in `__init__`'s order;
    /// `fallback`: the Python constructor taking the same arguments.
    #[new]
    fn new(class: &Bound<'_, PyType>, names: Vec<Bound<'_, PyString>>, fallback: PyObject) -> PyResult<Self> {
        let py = class.py();
        let object_new = py.get_type::<pyo3::types::PyAny>().getattr("__new__")?;
        if !class.getattr("__new__")?.is(&object_new) {
            return Err(PyTypeError::new_err("the class has a __new__ of its own"));
        }
        let flags = unsafe { ffi::PyType_GetFlags(class.as_ptr() as *mut ffi::PyTypeObject) };
        if flags & ffi::Py_TPFLAGS_IS_ABSTRACT != 0 {
            return Err(PyTypeError::new_err("an abstract class: object.__new__ refuses it"));
        }
        let offsets = names.iter().map(|name| member_offset(class, name)).collect::<PyResult<Vec<_>>>()?;
        Ok(SlotConstructor { class: class.clone().unbind(), offsets, fallback })
    }

    #[pyo3(signature = (*values, **keywords))]
    fn __call__(&self, py: Python<'_>, values: &Bound<'_, PyTuple>, keywords: Option<&Bound<'_, PyDict>>) -> PyResult<PyObject> {
        if keywords.is_some_and(|k| !k.is_empty()) || values.len() != self.offsets.len() {
            // Python's constructor takes keywords, and says what is wrong with the arguments in its own words.
            return Ok(self.fallback.bind(py).call(values, keywords)?.unbind());
        }
        unsafe {
            let class = self.class.as_ptr() as *mut ffi::PyTypeObject;
            let alloc = (*class).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(class, 0);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            let obj: PyObject = PyObject::from_owned_ptr(py, obj);
            for (i, &offset) in self.offsets.iter().enumerate() {
                let value = ffi::PyTuple_GET_ITEM(values.as_ptr(), i as ffi::Py_ssize_t);
                let slot = (obj.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
                let old = *slot;
                ffi::Py_INCREF(value);
                *slot = value;
                ffi::Py_XDECREF(old);
            }
            Ok(obj)
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SlotConstructor>()?;
    Ok(())
}
